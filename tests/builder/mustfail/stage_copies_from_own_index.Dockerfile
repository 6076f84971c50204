FROM alpine
COPY --from=0 /a /b
