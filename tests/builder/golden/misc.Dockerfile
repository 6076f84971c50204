from alpine:3.19 as Base
maintainer Jane Doe <jane@example.com>
HEALTHCHECK --interval=30s --timeout=3s --start-period=1m --start-interval=2s --retries=3 \
  CMD wget -qO- http://localhost/ || exit 1
HEALTHCHECK CMD ["curl", "-f", "http://localhost/"]
HEALTHCHECK NONE
EXPOSE 80 443/tcp 53/udp 8000-8010
STOPSIGNAL SIGQUIT
USER app:app
USER with spaces is one argument
WORKDIR /srv/app
ONBUILD COPY . /src
ONBUILD RUN make
FROM base
