FROM alpine IS build
