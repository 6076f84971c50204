FROM alpine latest
