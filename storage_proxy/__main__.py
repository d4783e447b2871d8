from storage_proxy.cli import main

raise SystemExit(main())
