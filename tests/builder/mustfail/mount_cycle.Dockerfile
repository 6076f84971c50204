FROM alpine AS a
RUN --mount=from=a,target=/x true
