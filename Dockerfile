# The Kaiwo operator image: `python -m kaiwo.manager` as a non-root user. The same image runs the download jobs
# (`python -m kaiwo.downloader`, the `downloader` extra plus the git CLI), so air-gapped clusters mirror one image.
# Build: docker build -t ghcr.io/silogen/kaiwo-operator:0.1.0 .   (the chart's image.repository and appVersion)
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kaiwo ./kaiwo
RUN pip install --no-cache-dir --prefix=/install '.[downloader]'

FROM python:3.12-slim
# The chart runs the container with a read-only root filesystem: no bytecode writes, unbuffered logs.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN apt-get update && apt-get install -y --no-install-recommends git ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /install /usr/local
RUN groupadd --system --gid 65532 kaiwo && useradd --system --uid 65532 --gid 65532 --no-create-home kaiwo
USER 65532:65532
ENTRYPOINT ["python", "-m", "kaiwo.manager"]
