FROM alpine AS a
COPY --from=c /x /x
FROM alpine AS b
COPY --from=a /x /x
FROM alpine AS c
COPY --from=b /x /x
