FROM alpine
RUN --mount=type=cache,tagret=/x true
