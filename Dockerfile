# Reactor in a container. Mount a pipelines folder on /pipelines; state goes to /data.
#   docker build -t reactor .
#   docker run -p 127.0.0.1:8080:8080 -v "$PWD/examples/quickstart:/pipelines" reactor
FROM python:3.11-slim

WORKDIR /src
COPY pyproject.toml README.md ./
COPY reactor ./reactor
COPY connectors ./connectors
RUN pip install --no-cache-dir . \
    && rm -rf /src \
    && useradd --create-home reactor \
    && mkdir /pipelines /data \
    && chown reactor /data

USER reactor
# Relative paths in events and params are read from here.
WORKDIR /pipelines
ENV REACTOR_HTTP=0.0.0.0:8080 \
    REACTOR_STORE=sqlite:////data/reactor.db
VOLUME /data
EXPOSE 8080
CMD ["reactor", "serve", "/pipelines"]
