FROM alpine
MAINTAINER --x=1 me
