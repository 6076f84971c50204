# syntax=docker/dockerfile:1
FROM nginx:1.27-alpine AS web
ARG SERVER_NAME=example.org
COPY <<EOF /etc/nginx/conf.d/default.conf
server {
    listen 80;
    server_name ${SERVER_NAME};
    location / {
        root /usr/share/nginx/html;
    }
}
EOF
COPY <<-'HTML' /usr/share/nginx/html/index.html
	<!doctype html>
	<p>Served by $hostname</p>
	HTML
RUN <<EOF
#!/bin/sh
set -eu
apk add --no-cache curl
nginx -t
EOF
RUN <<SCRIPT bash
  for f in /etc/nginx/conf.d/*.conf; do
    echo "checking $f"
  done
SCRIPT
COPY --chmod=755 <<"ENTRY" /docker-entrypoint.d/99-hello.sh
#!/bin/sh
echo "hello from $0"
ENTRY
HEALTHCHECK CMD curl -fs http://localhost/ || exit 1
