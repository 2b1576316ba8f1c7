# Self-hosting image: the whole site and API, offline, as a non-root user.
#
#   docker build -t playground .                          # CPU build of torch
#   docker build -t playground:cuda --build-arg VARIANT=cuda .
#   docker run -p 8000:8000 -v playground-data:/data playground
#
# Build arguments:
#   VARIANT          cpu (default) or cuda: which torch 2.13.0 build goes in.
#   TORCH_INDEX_URL  where the CPU build comes from (PyTorch's CPU wheel index by default).
#   PIP_FIND_LINKS   a folder of local wheels (e.g. a CPU torch wheel mounted into the build);
#                    when set, the CPU build is taken from there and no extra index is used.
#   BASE             the Debian base image (its python3 must be 3.11+, as bookworm's is).
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS build
ARG VARIANT=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_FIND_LINKS=
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_FIND_LINKS=${PIP_FIND_LINKS}
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
COPY pyproject.toml /src/pyproject.toml
# torch first, from the index the variant needs; then the rest of the pinned dependencies.
# torch's C++ tests and headers (~145 MB) go: nothing here compiles extensions or kernels.
RUN case "${VARIANT}" in \
      cpu)  if [ -n "${PIP_FIND_LINKS}" ]; then index=""; else index="--index-url ${TORCH_INDEX_URL}"; fi ;; \
      cuda) index="" ;; \
      *)    echo "VARIANT must be cpu or cuda, got ${VARIANT}" >&2; exit 2 ;; \
    esac \
 && /opt/venv/bin/pip install ${index} torch==2.13.0 \
 && /opt/venv/bin/python -c "import tomllib; deps = tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']; open('/src/requirements.txt', 'w').write('\n'.join(deps))" \
 && /opt/venv/bin/pip install -r /src/requirements.txt \
 && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + \
 && rm -rf /opt/venv/lib/python3*/site-packages/torch/test /opt/venv/lib/python3*/site-packages/torch/include \
 && rm -rf /opt/venv/lib/python3*/site-packages/pip /opt/venv/lib/python3*/site-packages/setuptools

FROM ${BASE}
ARG VARIANT=cpu
LABEL org.opencontainers.image.title="Deep Learning Cheat Sheet Playground" \
      org.opencontainers.image.description="Live experiments for the deep-learning cheat sheet (${VARIANT})"
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --create-home --shell /usr/sbin/nologin playground \
 && mkdir -p /data && chown playground:playground /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv/playground
COPY app ./app
COPY engine ./engine
COPY static ./static
COPY templates ./templates
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PLAYGROUND_DB_PATH=/data/playground.db
USER playground
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/health', timeout=2)"]
CMD ["python3", "-m", "uvicorn", "app.main:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000"]
