# syntax=docker/dockerfile:1
# fastkong image: the data plane (`fastkong start`) and, with other args, the other commands.
#   docker build -t fastkong:0.1.0 .
#   docker run -p 8000:8000 -v $PWD/configs:/etc/fastkong:ro \
#     -e KONG_DECLARATIVE_CONFIG=/etc/fastkong/kong.yml -e KONG_STATUS_LISTEN=0.0.0.0:8100 fastkong:0.1.0

# -- builder: compile the Cython kernels into a wheel, and collect the dependencies' wheels -----
FROM python:3.11-slim AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY fastkong ./fastkong
COPY configs/kong.yml ./configs/kong.yml
RUN find fastkong -name '*.so' -delete \
    && pip wheel --no-cache-dir --wheel-dir /wheels '.[controller]' \
    && python -c "import zipfile,glob; w=glob.glob('/wheels/fastkong-*.whl')[0]; \
assert any(n.endswith('.so') for n in zipfile.ZipFile(w).namelist()), 'no compiled kernels in ' + w"

# -- runtime: no compiler, no build files, a non-root user --------------------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --gid 10001 fastkong \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin fastkong
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels 'fastkong[controller]' \
    && python -c "import fastkong._core as c, fastkong._core.router as r; assert c.is_compiled(r)"
USER 10001:10001
WORKDIR /tmp
# proxy, proxy TLS, admin, status
EXPOSE 8000 8443 8001 8100
ENTRYPOINT ["fastkong"]
CMD ["start"]
