FROM alpine
this is not docker
