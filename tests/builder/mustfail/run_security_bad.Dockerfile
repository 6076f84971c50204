FROM alpine
RUN --security=privileged true
