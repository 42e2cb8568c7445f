#!/usr/bin/env bash
# Makes the complete DEVELOPMENT PKI for the demo and the tests, with the
# openssl command line only. Never use these keys in production; never commit
# them (the output directory is git-ignored).
#
#   certs/make-dev-pki.sh [OUT_DIR]     default OUT_DIR: certs/out
#   FORCE=1 certs/make-dev-pki.sh       regenerate even if OUT_DIR is complete
#
# Layout of OUT_DIR:
#   gateway/ca.{key,pem}            our CA: issues our TLS and signing certificates
#   gateway/tls-server.{key,pem}    partner-facing HTTPS listener (localhost, 127.0.0.1)
#   gateway/tls-client.{key,pem}    client certificate we present to partners (mTLS)
#   gateway/sign-rsa.{key,pem}      RSA-2048 XML-DSig signing key + certificate (lu-xml)
#   gateway/sign-sm2.{key,pub.pem}  SM2 signing/decryption key pair (yue-json)
#   partners/<name>/...             the same set for each demo partner, under that
#                                   partner's own CA: laizhou, zhaoyuan (RSA, lu-xml),
#                                   wujiang (SM2, yue-json)
# Private keys are mode 0600: the gateway refuses keys readable by others.
set -euo pipefail
umask 077

out=${1:-"$(cd "$(dirname "$0")" && pwd)/out"}
days=825

if [[ -f "$out/.complete" && -z "${FORCE:-}" ]]; then
  echo "make-dev-pki: $out is complete (FORCE=1 to regenerate)"
  exit 0
fi
rm -rf "$out"
mkdir -p "$out"

q() { "$@" >/dev/null 2>&1 || { echo "make-dev-pki: failed: $*" >&2; "$@"; exit 1; }; }

# make_ca DIR CN
make_ca() {
  mkdir -p "$1"
  q openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1/ca.key"
  q openssl req -x509 -new -key "$1/ca.key" -sha256 -days 3650 -subj "/O=tongban-gateway dev/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$1/ca.pem"
}

# issue DIR NAME CN EXTENSIONS : RSA key + certificate signed by DIR/ca
issue() {
  local dir=$1 name=$2 cn=$3 ext=$4
  q openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/$name.key"
  q openssl req -new -key "$dir/$name.key" -subj "/O=tongban-gateway dev/CN=$cn" -out "$dir/$name.csr"
  printf '%s\n' "$ext" >"$dir/$name.ext"
  q openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days "$days" -sha256 -extfile "$dir/$name.ext" -out "$dir/$name.pem"
  rm -f "$dir/$name.csr" "$dir/$name.ext"
}

# make_party DIR CN SIGNALG : a CA, TLS server and client certificates, a signing key
make_party() {
  local dir=$1 cn=$2 alg=$3
  make_ca "$dir" "$cn CA"
  issue "$dir" tls-server "$cn" \
    "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"
  issue "$dir" tls-client "$cn client" \
    "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  if [[ $alg == rsa ]]; then
    issue "$dir" sign-rsa "$cn signer" \
      "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,nonRepudiation"
  else
    q openssl genpkey -algorithm SM2 -out "$dir/sign-sm2.key"
    q openssl pkey -in "$dir/sign-sm2.key" -pubout -out "$dir/sign-sm2.pub.pem"
  fi
}

make_party "$out/gateway" "tbgw 430603" rsa
# The gateway talks to both partner kinds: it also needs an SM2 key pair.
q openssl genpkey -algorithm SM2 -out "$out/gateway/sign-sm2.key"
q openssl pkey -in "$out/gateway/sign-sm2.key" -pubout -out "$out/gateway/sign-sm2.pub.pem"

make_party "$out/partners/laizhou" "laizhou 370683" rsa
make_party "$out/partners/zhaoyuan" "zhaoyuan 370685" rsa
make_party "$out/partners/wujiang" "wujiang 440203" sm2

find "$out" -name '*.key' -exec chmod 0600 {} +
find "$out" -name '*.srl' -delete
touch "$out/.complete"
echo "make-dev-pki: wrote $out"
