FROM alpine
RUN --mount=type=bind,sharing=locked,target=/x true
