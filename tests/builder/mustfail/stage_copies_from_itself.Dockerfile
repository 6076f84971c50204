FROM alpine AS app
COPY --from=app /a /b
