ARG BASE=alpine
ARG A B=two C="three four" D=
FROM ${BASE}
ENV PATH /usr/local/bin:$PATH
ENV ONE=1 TWO="two words" THREE=three\ escaped FOUR='single $quoted'
ENV legacy value with "quotes" kept
LABEL org.opencontainers.image.title="My image" version=1.0 "key with space"=v
LABEL description "legacy label form"
ARG BASE
ARG HTTP_PROXY
