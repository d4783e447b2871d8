# The storage proxy: `storage-proxy serve` on 13000 (gRPC, h2c) and 9464 (/metrics).
# Build from the repository root:
#   docker build -f deploy/docker/proxy.Dockerfile -t REGISTRY/optuna-grpc-storage-proxy:0.1.0 .
# Configure it with STORAGE_PROXY_* environment variables (`storage-proxy serve --help`);
# STORAGE_PROXY_REDIS_URL is required: the image has no embedded redis-server.

FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY storage_proxy ./storage_proxy
COPY optuna_grpc_storage ./optuna_grpc_storage
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[server,s3]"

FROM python:3.12-slim
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin proxy
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "optuna-grpc-storage[server,s3]" \
    && rm -rf /wheels
# Nothing is written at run time (the root file system may be read-only); logs go to stderr.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STORAGE_PROXY_HOST=0.0.0.0 \
    STORAGE_PROXY_METRICS_BIND=0.0.0.0 \
    STORAGE_PROXY_LOG_FORMAT=json
USER 10001:10001
EXPOSE 13000 9464
ENTRYPOINT ["storage-proxy"]
CMD ["serve"]
