FROM debian:bookworm
RUN apt-get update \
    # a comment inside the continuation is dropped
    && apt-get install -y \
        ca-certificates \

        curl \
  # indented comment too
    && rm -rf /var/lib/apt/lists/*
RUN echo "trailing spaces after the backslash" \   
    && true
RUN echo escaped-backslash-ends-here \\
RUN echo next-instruction
	RUN echo leading tab on the first line
run echo lowercase keyword
