FROM alpine
RUNN echo hi
