FROM alpine
RUN --mount=type=cache,target=/x,mode=999 true
