# Tidings: one image for every role (`serve`, `api`, `worker`).
#   docker build -t tidings .
#   docker run -p 8080:8080 -v tidings-data:/data tidings            # all-in-one, SQLite
#   docker compose up                                                 # PostgreSQL + Redis
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TIDINGS_HOST=0.0.0.0 \
    TIDINGS_PORT=8080 \
    TIDINGS_DATABASE_URL=sqlite:////data/tidings.db

# Exactly the locked versions (uv.lock), as `make run` installs them, without the dev
# extras; uv (pinned as in the Makefile) is only used to build the image's venv.
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
COPY src ./src
RUN pip install "uv==0.13.9" \
    && UV_PROJECT_ENVIRONMENT=/opt/tidings UV_PYTHON_DOWNLOADS=never \
       uv sync --locked --no-dev --no-editable --compile-bytecode --python "$(command -v python)" \
    && pip uninstall -y uv && rm -rf /src /root/.cache \
    && useradd --system --uid 10001 --home-dir /data --create-home tidings
ENV PATH=/opt/tidings/bin:$PATH

USER tidings
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
    CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)" || exit 1
ENTRYPOINT ["tidings"]
CMD ["serve"]
