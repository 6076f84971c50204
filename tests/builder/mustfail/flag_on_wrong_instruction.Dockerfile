FROM alpine
COPY --platform=linux/amd64 a b
