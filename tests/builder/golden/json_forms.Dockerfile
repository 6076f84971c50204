FROM busybox
CMD ["echo", "hello world"]
CMD ["echo", 'single quotes are not JSON']
CMD [ "tight" ]   trailing text after the array is ignored
CMD ["unterminated
ENTRYPOINT []
RUN ["sh", "-c", "echo \"quoted\" \u00e9"]
VOLUME ["/data", "/logs"]
VOLUME /a /b	/c
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY ["file with spaces.txt", "/dest dir/"]
COPY "quoted" /no-quote-handling/
