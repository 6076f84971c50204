FROM alpine
COPY --chwon=1 a b
