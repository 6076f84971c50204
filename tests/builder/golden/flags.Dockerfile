FROM --platform=$BUILDPLATFORM golang:1.22 AS build
RUN --mount=type=cache,target=/root/.cache/go-build,sharing=locked,id=gocache \
    --mount=type=bind,source=go.sum,target=go.sum \
    --mount=type=secret,id=token,env=TOKEN,required=true \
    --mount=type=ssh \
    --mount=type=tmpfs,target=/tmp,size=64m \
    --network=none --security=sandbox \
    go build ./...
FROM alpine:3.20 AS final
COPY --from=build --chown=app:app --chmod=0755 --link --exclude=*.md --exclude=docs --parents src/ /app/
ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d --chmod=644 https://example.com/a.tgz /tmp/
ADD --keep-git-dir=true https://github.com/moby/buildkit.git#v0.14.0 /src
ADD --link --unpack=false archive.tar.gz /opt/
COPY -- --weird-name /x
