FROM alpine
RUN --mount=from=$X,target=/x true
