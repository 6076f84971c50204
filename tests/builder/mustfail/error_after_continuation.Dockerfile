FROM alpine
RUN echo \
  ok
COPY \
  onlyone
