# syntax=docker/dockerfile:1
# pagerd in a container: `docker build -t pagerd .` then
#   docker run -d --name pagerd -v pager-state:/var/lib/pager -v pager-run:/run/pager pagerd
#   docker exec pagerd pager alert example "it broke"

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY pager ./pager
COPY pagerd ./pagerd
RUN python -m venv /opt/pagerd \
 && /opt/pagerd/bin/pip install --no-cache-dir --disable-pip-version-check -c constraints.txt .

FROM python:3.11-slim
# A fixed uid and gid: the volumes' owner and the socket's group are the same on every build,
# and the numeric USER lets an orchestrator check that it does not run as root.
RUN groupadd --system --gid 10001 pager \
 && useradd --system --uid 10001 --gid pager --home-dir /var/lib/pager \
    --shell /usr/sbin/nologin pager \
 && mkdir -p /var/lib/pager /run/pager /etc/pager \
 && chown pager:pager /var/lib/pager /run/pager \
 && chmod 0750 /var/lib/pager
COPY --from=build /opt/pagerd /opt/pagerd
COPY config/pager.container.toml /etc/pager/pager.toml
ENV PATH=/opt/pagerd/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PAGER_SOCKET=/run/pager/pager.sock
USER 10001:10001
VOLUME ["/var/lib/pager", "/run/pager"]
# pagerd is PID 1 here: it handles SIGTERM itself (stops accepting, finishes, exits 0).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s CMD ["pager", "--timeout", "4", "ping"]
ENTRYPOINT ["pagerd"]
CMD ["--config", "/etc/pager/pager.toml"]
