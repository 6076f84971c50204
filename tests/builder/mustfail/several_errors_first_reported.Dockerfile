FROM alpine
FOO
COPY x
RUN --bad true
