# The trial runtime: Python, Optuna and the optuna-grpc-storage client, for trial Pods (and
# notebooks). Build from the repository root:
#   docker build -f deploy/docker/trial-runtime.Dockerfile \
#       -t REGISTRY/optuna-grpc-storage-trial:0.1.0 .
# Add your objective and its libraries in an image FROM this one. A trial Pod finds the proxy
# and its token in OPTUNA_GRPC_STORAGE_ENDPOINT and OPTUNA_GRPC_STORAGE_TOKEN.

FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY storage_proxy ./storage_proxy
COPY optuna_grpc_storage ./optuna_grpc_storage
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
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
