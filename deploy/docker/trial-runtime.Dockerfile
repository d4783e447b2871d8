# The trial runtime: Python, Optuna and the optuna-grpc-storage client, for trial Pods (and
# notebooks). The objective travels pickled by value, so a worker needs the notebook's Python
# minor version: build one image per Python your users run, tagged as the controller's
# RUNTIME_IMAGES name them (<repository>:<version>-py<X.Y>-cpu, and -cuda12 for GPUs; see
# optuna_grpc_storage/runner/images.py and deploy/README.md section 2). From the repository
# root:
#   docker build -f deploy/docker/trial-runtime.Dockerfile --build-arg PYTHON=3.12 \
#       -t REGISTRY/optuna-grpc-storage-runtime:0.1.0-py3.12-cpu .
# For GPUs, BASE is a CUDA image whose Python is PYTHON (the build checks it), e.g.
#   docker build -f deploy/docker/trial-runtime.Dockerfile --build-arg PYTHON=3.11 \
#       --build-arg BASE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime \
#       -t REGISTRY/optuna-grpc-storage-runtime:0.1.0-py3.11-cuda12 .
# Add your objective's libraries in an image FROM this one, or let the controller install
# them (optimize(requirements_list=...)). A trial Pod finds the proxy and its token in
# OPTUNA_GRPC_STORAGE_ENDPOINT and OPTUNA_GRPC_STORAGE_TOKEN.
ARG PYTHON=3.12
ARG BASE=python:${PYTHON}-slim

FROM python:${PYTHON}-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY storage_proxy ./storage_proxy
COPY optuna_grpc_storage ./optuna_grpc_storage
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${BASE}
ARG PYTHON
RUN python -c "import sys; v = '%d.%d' % sys.version_info[:2]; \
    assert v == '${PYTHON}', f'BASE has Python {v}, not ${PYTHON}: build with PYTHON={v}'"
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/trial \
    --shell /usr/sbin/nologin trial
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels optuna-grpc-storage \
    && rm -rf /wheels
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /home/trial
CMD ["python", "-m", "optuna_grpc_storage.runner.worker"]
