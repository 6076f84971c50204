# hoist's own image: the hoist CLI and its registry server in a slim Python.
#
#   hoist build -t hoist .                       (or: docker build -t hoist .)
#   hoist run -d --network host -v /srv/registry:/var/lib/hoist/registry hoist
#
# The default command serves the registry on 0.0.0.0:5000 with its store in the volume at
# /var/lib/hoist/registry; any other hoist command line replaces it (`... hoist registry serve
# --config /etc/hoist/registry.yml`). BASE is any Debian-like image with python3 (>= 3.11), its
# venv module and CA certificates; the build installs hoist's dependencies from PyPI.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY storage storage
COPY registry registry
COPY builder builder
COPY runtime runtime
COPY hoist hoist
RUN python3 -m venv /opt/hoist \
    && /opt/hoist/bin/pip install --no-cache-dir --disable-pip-version-check /src \
    && /opt/hoist/bin/hoist --version

FROM ${BASE}
COPY --from=build /opt/hoist /opt/hoist
ENV PATH=/opt/hoist/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
VOLUME /var/lib/hoist/registry
EXPOSE 5000
ENTRYPOINT ["hoist"]
CMD ["registry", "serve", "--addr", "0.0.0.0:5000", "--root", "/var/lib/hoist/registry"]
