#!/usr/bin/env bash
# Prints every token used literally in t/020-jwt.t, t/021-jwt-security.t,
# t/023-jwt-header-safety.t, t/024-jwt-crypto.t and t/025-jwt-parsing.t, one "NAME=token" line each, after a
# comment saying how it was made. The .t files carry the same comment next to each pasted token (e.g. "# RS256, kid
# rsa2048, sub alice").
#
#   t/gen/jwt-tokens.sh > /tmp/tokens.txt        # from the package root
#
# Tests never depend on the clock: valid tokens expire in 2100 (exp 4102444800), expired ones
# in 2001 (exp 1000000000), not-yet-valid ones start in 2096 (nbf 4000000000). RS256, RS*,
# HS* and EdDSA signatures are deterministic, so those tokens come out byte for byte the same;
# PS* and ES* signatures are randomized, so regenerated ones differ (both verify).
#
# Needs gw-jwt (built on first use), openssl and basenc. Keys: t/keys/ (see t/keys/README.md).
set -euo pipefail

cd "$(dirname "$0")/../.."
K=t/keys
if [[ -z "${GWJWT:-}" ]]; then
    cargo build --release -q -p gateway-core --bin gw-jwt
    GWJWT=target/release/gw-jwt
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

EXP=4102444800      # 2100-01-01
PAST=1000000000     # 2001-09-09
FUTURE=4000000000   # 2096-10-02
ALICE="{\"sub\":\"alice\",\"exp\":$EXP}"

gw() { "$GWJWT" "$@"; }
b64u() { basenc --base64url -w0 | tr -d '='; }
b64udec() { local s; s=$(tr -- '-_' '+/'); while (( ${#s} % 4 )); do s+='='; done; printf '%s' "$s" | base64 -d; }
emit() { # emit NAME "comment" token
    printf '# %s\n%s=%s\n' "$2" "$1" "$3"
}
# openssl-made RS256 / ES256 signatures over arbitrary header and payload bytes (files).
raw_signed() { # raw_signed HEADER_FILE PAYLOAD_FILE KEY [der] -> token
    local input
    input="$(b64u <"$1").$(b64u <"$2")"
    printf '%s.%s' "$input" "$(printf '%s' "$input" | openssl dgst -sha256 -sign "$3" -binary | b64u)"
}
# An oct JWK whose secret is the bytes of a file (for key-confusion tokens).
oct_from_file() { # oct_from_file FILE -> path of a JWK
    local out="$TMP/oct-$RANDOM.jwk"
    printf '{"kty":"oct","k":"%s"}' "$(b64u <"$1")" >"$out"
    printf '%s' "$out"
}

echo "# ---- t/020-jwt.t: every algorithm, valid and with one signature bit flipped"
for a in HS256 HS384 HS512; do
    k=$(echo "$a" | tr 'A-Z' 'a-z')
    emit "${a}_OK" "$a, kid $k, sub alice, exp 2100" \
        "$(gw sign --key $K/$k.jwk --alg $a --kid "$k" --claims "$ALICE")"
    emit "${a}_BAD" "$a, kid $k, sub alice, exp 2100, --corrupt-signature" \
        "$(gw sign --key $K/$k.jwk --alg $a --kid "$k" --claims "$ALICE" --corrupt-signature)"
done
for a in RS256 RS384 RS512 PS256 PS384 PS512; do
    emit "${a}_OK" "$a, kid rsa2048, sub alice, exp 2100" \
        "$(gw sign --key $K/rsa2048.key.pem --alg $a --kid rsa2048 --claims "$ALICE")"
    emit "${a}_BAD" "$a, kid rsa2048, sub alice, exp 2100, --corrupt-signature" \
        "$(gw sign --key $K/rsa2048.key.pem --alg $a --kid rsa2048 --claims "$ALICE" --corrupt-signature)"
done
for spec in ES256:ec256 ES384:ec384 EdDSA:ed25519; do
    a=${spec%%:*} k=${spec#*:}
    n=$(echo "$a" | tr 'a-z' 'A-Z')
    emit "${n}_OK" "$a, kid $k, sub alice, exp 2100" \
        "$(gw sign --key $K/$k.key.pem --alg $a --kid "$k" --claims "$ALICE")"
    emit "${n}_BAD" "$a, kid $k, sub alice, exp 2100, --corrupt-signature" \
        "$(gw sign --key $K/$k.key.pem --alg $a --kid "$k" --claims "$ALICE" --corrupt-signature)"
done

echo "# ---- t/024-jwt-crypto.t: ES512 and Ed448 (OpenSSL only)"
for spec in ES512:ec521 EdDSA:ed448; do
    a=${spec%%:*} k=${spec#*:}
    n=$(echo "$a-$k" | tr 'a-z-' 'A-Z_')
    emit "${n}_OK" "$a, kid $k, sub alice, exp 2100" \
        "$(gw sign --key $K/$k.key.pem --alg $a --kid "$k" --claims "$ALICE")"
    emit "${n}_BAD" "$a, kid $k, sub alice, exp 2100, --corrupt-signature" \
        "$(gw sign --key $K/$k.key.pem --alg $a --kid "$k" --claims "$ALICE" --corrupt-signature)"
done
emit ES512_NOKID "ES512 (ec521), no kid, sub alice, exp 2100" \
    "$(gw sign --key $K/ec521.key.pem --alg ES512 --claims "$ALICE")"

echo "# ---- t/020-jwt.t: key formats, kid"
emit RS256_NOKID "RS256, no kid, sub alice, exp 2100" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --claims "$ALICE")"
emit RS256_KID_OTHER "RS256 (rsa2048), kid other, sub alice, exp 2100" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid other --claims "$ALICE")"
emit ES256_NOKID "ES256 (ec256), no kid, sub alice, exp 2100" \
    "$(gw sign --key $K/ec256.key.pem --alg ES256 --claims "$ALICE")"
emit EDDSA_NOKID "EdDSA (ed25519), no kid, sub alice, exp 2100" \
    "$(gw sign --key $K/ed25519.key.pem --alg EdDSA --claims "$ALICE")"

echo "# ---- t/020-jwt.t: claims"
emit BOB "RS256, kid rsa2048, sub bob, level 1, scope read, realm_access.roles [reader], exp 2100" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid rsa2048 \
        --claims "{\"sub\":\"bob\",\"exp\":$EXP,\"level\":1,\"scope\":\"read\",\"realm_access\":{\"roles\":[\"reader\"]}}")"
RICH="{\"sub\":\"alice\",\"exp\":$EXP,\"iss\":\"https://issuer.example\",\"aud\":\"api\",\"roles\":[\"admin\",\"dev\"],\"org\":{\"id\":7,\"name\":\"acme\"},\"realm_access\":{\"roles\":[\"reader\",\"writer\"]},\"scope\":\"read write\",\"level\":5}"
emit RICH "RS256, kid rsa2048, claims $RICH" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid rsa2048 --claims "$RICH")"
emit AUD_ARRAY "RS256, kid rsa2048, sub alice, iss https://other.example, aud [web, api2], exp 2100" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid rsa2048 \
        --claims "{\"sub\":\"alice\",\"exp\":$EXP,\"iss\":\"https://other.example\",\"aud\":[\"web\",\"api2\"]}")"
emit AUD_OTHER "RS256, kid rsa2048, sub alice, iss https://issuer2.example, aud other, exp 2100" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid rsa2048 \
        --claims "{\"sub\":\"alice\",\"exp\":$EXP,\"iss\":\"https://issuer2.example\",\"aud\":\"other\"}")"
emit TYP_AT "RS256, kid rsa2048, header typ at+jwt, sub alice, exp 2100" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid rsa2048 --header '{"typ":"at+jwt"}' --claims "$ALICE")"
emit TYP_APP_AT "RS256, kid rsa2048, header typ application/at+jwt, sub alice, exp 2100" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid rsa2048 --header '{"typ":"application/at+jwt"}' --claims "$ALICE")"
emit EXPIRED "RS256, kid rsa2048, sub alice, exp 1000000000 (2001)" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid rsa2048 --claims "{\"sub\":\"alice\",\"exp\":$PAST}")"
emit NBF_FUTURE "RS256, kid rsa2048, sub alice, nbf 4000000000 (2096), exp 2100" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid rsa2048 --claims "{\"sub\":\"alice\",\"nbf\":$FUTURE,\"exp\":$EXP}")"
emit NOEXP "RS256, kid rsa2048, sub alice, no exp" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid rsa2048 --claims '{"sub":"alice"}')"
emit NOSUB "RS256, kid rsa2048, no sub, exp 2100" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid rsa2048 --claims "{\"exp\":$EXP}")"

echo "# ---- t/021-jwt-security.t: 1. alg none"
for a in none None NONE nOnE; do
    n=$(echo "$a" | tr 'a-z' 'A-Z')
    emit "ALG_${a}_EMPTY" "unsigned, header alg $a, sub admin, exp 2100, empty signature" \
        "$(gw encode-unsigned --header "{\"alg\":\"$a\",\"typ\":\"JWT\"}" --claims "{\"sub\":\"admin\",\"exp\":$EXP}")"
done
emit ALG_none_SIG "unsigned, header alg none, sub admin, exp 2100, signature segment c2lnbmF0dXJl" \
    "$(gw encode-unsigned --header '{"alg":"none"}' --claims "{\"sub\":\"admin\",\"exp\":$EXP}" --signature c2lnbmF0dXJl)"
# alg none with the signature of a real RS256 token over the same header+payload would need the
# header to say RS256; instead: kid rsa2048 and a real-looking 256-byte signature.
emit ALG_NONE_KID_SIG "unsigned, header alg NONE kid rsa2048, sub admin, exp 2100, signature = an RS256 signature" \
    "$(gw encode-unsigned --header '{"alg":"NONE","kid":"rsa2048"}' --claims "{\"sub\":\"admin\",\"exp\":$EXP}" \
        --signature "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid rsa2048 --claims "$ALICE" | cut -d. -f3)")"

echo "# ---- 2. key confusion: HS256 with a public key as the HMAC secret"
openssl pkey -pubin -in $K/rsa2048.pub.pem -outform DER -out "$TMP/rsa2048.pub.der" 2>/dev/null
emit CONF_PEM "HS256, kid rsa2048, sub admin, exp 2100, secret = text of rsa2048.pub.pem" \
    "$(gw sign --key "$(oct_from_file $K/rsa2048.pub.pem)" --alg HS256 --kid rsa2048 --claims "{\"sub\":\"admin\",\"exp\":$EXP}")"
emit CONF_PEM_NOKID "HS256, no kid, sub admin, exp 2100, secret = text of rsa2048.pub.pem" \
    "$(gw sign --key "$(oct_from_file $K/rsa2048.pub.pem)" --alg HS256 --claims "{\"sub\":\"admin\",\"exp\":$EXP}")"
emit CONF_DER "HS256, no kid, sub admin, exp 2100, secret = DER (SPKI) of rsa2048.pub.pem" \
    "$(gw sign --key "$(oct_from_file "$TMP/rsa2048.pub.der")" --alg HS256 --claims "{\"sub\":\"admin\",\"exp\":$EXP}")"
emit CONF_JWK "HS256, kid rsa2048, sub admin, exp 2100, secret = bytes of rsa2048.jwk" \
    "$(gw sign --key "$(oct_from_file $K/rsa2048.jwk)" --alg HS256 --kid rsa2048 --claims "{\"sub\":\"admin\",\"exp\":$EXP}")"
emit CONF_EC_PEM "HS256, kid ec256, sub admin, exp 2100, secret = text of ec256.pub.pem" \
    "$(gw sign --key "$(oct_from_file $K/ec256.pub.pem)" --alg HS256 --kid ec256 --claims "{\"sub\":\"admin\",\"exp\":$EXP}")"

echo "# ---- 4. kid"
emit KID_UNKNOWN "RS256 (rsa2048), kid nope, sub alice, exp 2100" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid nope --claims "$ALICE")"
emit KID_PATH "RS256 (rsa2048), kid ../../dev/null, sub alice, exp 2100" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid ../../dev/null --claims "$ALICE")"
emit KID_QUOTE "RS256 (rsa2048), kid \"' OR 1=1 --, sub alice, exp 2100" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid "\"' OR 1=1 --" --claims "$ALICE")"
emit KID_LONG "RS256 (rsa2048), kid = 4096 x 'k', sub alice, exp 2100" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid "$(printf 'k%.0s' $(seq 4096))" --claims "$ALICE")"
emit KID_NUMBER "RS256 (rsa2048), kid 2048 (a number), sub alice, exp 2100" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --header '{"kid":2048}' --claims "$ALICE")"
emit KID_EC_FOR_RSA "RS256 (rsa2048), kid ec256 (an EC key), sub alice, exp 2100" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid ec256 --claims "$ALICE")"

echo "# ---- 5. embedded keys"
emit JWK_EMBED "ES256 signed by ec256-other, kid ec256, header jwk = ec256-other.jwk, sub admin, exp 2100" \
    "$(gw sign --key $K/ec256-other.key.pem --alg ES256 --kid ec256 \
        --header "{\"jwk\":$(tr -d ' \n' <$K/ec256-other.jwk)}" --claims "{\"sub\":\"admin\",\"exp\":$EXP}")"
emit JKU_EMBED "RS256 signed by rsa3072, kid rsa2048, header jku http://127.0.0.1:9/jwks.json, sub admin, exp 2100" \
    "$(gw sign --key $K/rsa3072.key.pem --alg RS256 --kid rsa2048 \
        --header '{"jku":"http://127.0.0.1:9/jwks.json"}' --claims "{\"sub\":\"admin\",\"exp\":$EXP}")"
emit X5U_EMBED "RS256 signed by rsa3072, kid rsa2048, header x5u http://127.0.0.1:9/cert.pem, sub admin, exp 2100" \
    "$(gw sign --key $K/rsa3072.key.pem --alg RS256 --kid rsa2048 \
        --header '{"x5u":"http://127.0.0.1:9/cert.pem"}' --claims "{\"sub\":\"admin\",\"exp\":$EXP}")"
openssl req -x509 -key $K/rsa3072.key.pem -subj /CN=attacker -days 1 -outform DER -out "$TMP/x5c.der" 2>/dev/null
emit X5C_EMBED "RS256 signed by rsa3072, no kid, header x5c = [self-signed cert of rsa3072], sub admin, exp 2100" \
    "$(gw sign --key $K/rsa3072.key.pem --alg RS256 \
        --header "{\"x5c\":[\"$(base64 -w0 <"$TMP/x5c.der")\"]}" --claims "{\"sub\":\"admin\",\"exp\":$EXP}")"
emit JKU_GOOD "RS256 signed by rsa2048 (the right key), kid rsa2048, header jku http://127.0.0.1:9/jwks.json, sub alice, exp 2100" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid rsa2048 \
        --header '{"jku":"http://127.0.0.1:9/jwks.json"}' --claims "$ALICE")"

echo "# ---- 6. crit"
emit CRIT_EMPTY "RS256, kid rsa2048, header crit [], sub alice, exp 2100" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid rsa2048 --header '{"crit":[]}' --claims "$ALICE")"
emit CRIT_EXP "RS256, kid rsa2048, header crit [exp] and exp, sub alice, exp 2100" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid rsa2048 --header "{\"crit\":[\"exp\"],\"exp\":$EXP}" --claims "$ALICE")"

echo "# ---- 7. time claims of the wrong type or range"
for spec in \
    'EXP_STRING:{"sub":"alice","exp":"4102444800"}' \
    'EXP_NEGATIVE:{"sub":"alice","exp":-1}' \
    'EXP_HUGE:{"sub":"alice","exp":100000000000000000000}' \
    'EXP_FLOAT_HUGE:{"sub":"alice","exp":1e300}' \
    'EXP_FLOAT:{"sub":"alice","exp":4102444800.5}' \
    'NBF_STRING:{"sub":"alice","exp":4102444800,"nbf":"0"}' \
    'IAT_STRING:{"sub":"alice","exp":4102444800,"iat":"yesterday"}'; do
    n=${spec%%:*} c=${spec#*:}
    emit "$n" "RS256, kid rsa2048, raw payload $c" \
        "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid rsa2048 --raw-payload-json "$c")"
done

echo "# ---- 9. shape"
emit SEG2 "the first two segments of RS256_OK (no signature segment)" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid rsa2048 --claims "$ALICE" | cut -d. -f1-2)"
emit SEG4 "RS256_OK with a fourth segment .AAAA" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid rsa2048 --claims "$ALICE").AAAA"
emit SEG5 "a JWE-like 5-segment token (header alg RSA-OAEP enc A256GCM)" \
    "$(printf '{"alg":"RSA-OAEP","enc":"A256GCM"}' | b64u).AAAA.AAAA.AAAA.AAAA"
RS256_OK=$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid rsa2048 --claims "$ALICE")
emit PAD "RS256_OK with '=' padding appended to the signature" "${RS256_OK}="
emit STD_B64 "RS256_OK with its signature in standard base64 (- and _ turned into + and /)" \
    "$(printf '%s' "$RS256_OK" | cut -d. -f1-2).$(printf '%s' "$RS256_OK" | cut -d. -f3 | tr -- '-_' '+/')"
emit HDR_NOT_OBJECT "RS256 signed, raw header [\"RS256\"]" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --raw-header-json '["RS256"]' --claims "$ALICE")"
emit PAYLOAD_NOT_OBJECT "RS256, kid rsa2048, raw payload [\"alice\"] (signature valid)" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid rsa2048 --raw-payload-json '["alice"]')"
emit DUP_HEADER "RS256 signed, raw header {\"alg\":\"RS256\",\"kid\":\"rsa2048\",\"alg\":\"HS256\"}" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --raw-header-json '{"alg":"RS256","kid":"rsa2048","alg":"HS256"}' --claims "$ALICE")"
emit DUP_PAYLOAD "RS256, kid rsa2048, raw payload {\"sub\":\"alice\",\"sub\":\"admin\",\"exp\":4102444800}" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid rsa2048 --raw-payload-json "{\"sub\":\"alice\",\"sub\":\"admin\",\"exp\":$EXP}")"
printf '{"alg":"RS256","kid":"rsa2048"}' >"$TMP/h.json"
printf '{"sub":"al\xffice","exp":4102444800}' >"$TMP/p-bad-utf8.json"
emit BAD_UTF8 "RS256 (openssl dgst -sha256 -sign rsa2048.key.pem), kid rsa2048, payload bytes {\"sub\":\"al<0xff>ice\",\"exp\":4102444800}" \
    "$(raw_signed "$TMP/h.json" "$TMP/p-bad-utf8.json" $K/rsa2048.key.pem)"
emit LONE_SURROGATE "RS256, kid rsa2048, raw payload {\"sub\":\"\\ud800\",\"exp\":4102444800}" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid rsa2048 --raw-payload-json "{\"sub\":\"\\ud800\",\"exp\":$EXP}")"
deep=$(printf '[%.0s' $(seq 40))$(printf ']%.0s' $(seq 40))
emit DEEP "RS256, kid rsa2048, raw payload {\"sub\":\"alice\",\"exp\":4102444800,\"deep\":<40 nested arrays>}" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid rsa2048 --raw-payload-json "{\"sub\":\"alice\",\"exp\":$EXP,\"deep\":$deep}")"
emit BIG "RS256, kid rsa2048, sub alice, exp 2100, pad = 1500 x 'p' (a 2.3 KB token)" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid rsa2048 --claims "{\"sub\":\"alice\",\"exp\":$EXP,\"pad\":\"$(printf 'p%.0s' $(seq 1500))\"}")"

echo "# ---- 10. crypto"
ES=$(gw sign --key $K/ec256.key.pem --alg ES256 --kid ec256 --claims "$ALICE")
ES_IN=$(printf '%s' "$ES" | cut -d. -f1-2)
ES_SIG_HEX=$(printf '%s' "$ES" | cut -d. -f3 | b64udec | xxd -p -c 256)
ZERO32=$(printf '0%.0s' $(seq 64))
hex2b64u() { xxd -r -p | b64u; }
emit ES256_RS_ZERO "ES256 header+payload of ES256_OK (kid ec256, sub alice), signature r = 0, s = 0 (64 zero bytes)" \
    "$ES_IN.$(printf '%s%s' $ZERO32 $ZERO32 | hex2b64u)"
emit ES256_R_ZERO "ES256, kid ec256, sub alice: a real signature with r replaced by 0" \
    "$ES_IN.$(printf '%s%s' $ZERO32 "${ES_SIG_HEX:64:64}" | hex2b64u)"
emit ES256_S_ZERO "ES256, kid ec256, sub alice: a real signature with s replaced by 0" \
    "$ES_IN.$(printf '%s%s' "${ES_SIG_HEX:0:64}" $ZERO32 | hex2b64u)"
emit ES256_DER "ES256, kid ec256, sub alice: a valid signature DER-encoded (openssl dgst -sha256 -sign ec256.key.pem)" \
    "$ES_IN.$(printf '%s' "$ES_IN" | openssl dgst -sha256 -sign $K/ec256.key.pem -binary | b64u)"
emit ES256_SHORT "ES256, kid ec256, sub alice: a valid signature without its last byte (63 bytes)" \
    "$ES_IN.$(printf '%s' "${ES_SIG_HEX:0:126}" | hex2b64u)"
RS_SIG_HEX=$(printf '%s' "$RS256_OK" | cut -d. -f3 | b64udec | xxd -p -c 512)
emit RS256_SHORT "RS256_OK with its signature's last byte dropped (255 bytes)" \
    "$(printf '%s' "$RS256_OK" | cut -d. -f1-2).$(printf '%s' "${RS_SIG_HEX:0:510}" | hex2b64u)"
emit SPACE "RS256_OK with a space inserted in its signature" \
    "$(printf '%s' "$RS256_OK" | sed -E 's/^([^.]*\.[^.]*\.[^.]{10})/\1 /')"
emit NON_ASCII "RS256_OK with a UTF-8 e-acute inserted in its signature" \
    "$(printf '%s' "$RS256_OK" | sed -E 's/^([^.]*\.[^.]*\.[^.]{10})/\1é/')"

echo "# ---- t/050-jwks.t, t/051-jwks-oidc.t: key sets (compact JSON) and tokens"
jwks_of() { gw jwks "$@" | tr -d ' \n'; echo; }
emit JWKS_A "key set: rsa2048.pub.pem, kid rsa2048, alg RS256, use sig" \
    "$(jwks_of --pub $K/rsa2048.pub.pem --kid rsa2048 --alg RS256 --use sig)"
emit JWKS_B "key set: rsa3072.pub.pem, kid rsa3072, alg RS256, use sig" \
    "$(jwks_of --pub $K/rsa3072.pub.pem --kid rsa3072 --alg RS256 --use sig)"
emit JWKS_AB "key set: JWKS_A and JWKS_B's keys" \
    "$(jwks_of --pub $K/rsa2048.pub.pem --kid rsa2048 --alg RS256 --use sig --pub $K/rsa3072.pub.pem --kid rsa3072 --alg RS256 --use sig)"
emit JWKS_AE "key set: rsa2048 (RS256) and ec256.pub.pem, kid ec256, alg ES256, use sig" \
    "$(jwks_of --pub $K/rsa2048.pub.pem --kid rsa2048 --alg RS256 --use sig --pub $K/ec256.pub.pem --kid ec256 --alg ES256 --use sig)"
emit JWKS_ENC "key set: enc-only.jwks, compact" "$(tr -d ' \n' <$K/enc-only.jwks)"
emit TOKEN_A "RS256, kid rsa2048, sub alice, exp 2100" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid rsa2048 --claims "$ALICE")"
emit TOKEN_A_BAD "RS256, kid rsa2048, sub alice, exp 2100, --corrupt-signature" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid rsa2048 --claims "$ALICE" --corrupt-signature)"
emit TOKEN_NOPE "RS256 (rsa2048), kid nope, sub alice, exp 2100" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid nope --claims "$ALICE")"
emit TOKEN_B "RS256, kid rsa3072, sub bob, exp 2100" \
    "$(gw sign --key $K/rsa3072.key.pem --alg RS256 --kid rsa3072 --claims "{\"sub\":\"bob\",\"exp\":$EXP}")"
emit TOKEN_EC "ES256, kid ec256, sub carol, exp 2100" \
    "$(gw sign --key $K/ec256.key.pem --alg ES256 --kid ec256 --claims "{\"sub\":\"carol\",\"exp\":$EXP}")"
emit TOKEN_HS "HS256, kid hs256, sub dave, exp 2100" \
    "$(gw sign --key $K/hs256.jwk --alg HS256 --kid hs256 --claims "{\"sub\":\"dave\",\"exp\":$EXP}")"
emit TOKEN_ISS "RS256, kid rsa2048, sub alice, iss http://idp.test/realms/demo, exp 2100" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid rsa2048 --claims "{\"sub\":\"alice\",\"exp\":$EXP,\"iss\":\"http://idp.test/realms/demo\"}")"
emit TOKEN_EVIL "RS256, kid rsa2048, sub alice, iss https://evil.example, exp 2100" \
    "$(gw sign --key $K/rsa2048.key.pem --alg RS256 --kid rsa2048 --claims "{\"sub\":\"alice\",\"exp\":$EXP,\"iss\":\"https://evil.example\"}")"
# The kid flood (t/050-jwks.t TEST 3): this token, with the base64 characters at positions 31,
# 35 and 39 of its header replaced by the digits of the request number (each decodes to one
# kid byte, '4'..'='), so that every request names another unknown kid.
emit FLOOD "RS256 signed by rsa3072, header {\"alg\":\"RS256\",\"kid\":\"f4lo4d-4\"}, sub mallory, exp 2100" \
    "$(gw sign --key $K/rsa3072.key.pem --alg RS256 --raw-header-json '{"alg":"RS256","kid":"f4lo4d-4"}' --claims "{\"sub\":\"mallory\",\"exp\":$EXP}")"

echo "# ---- t/023-jwt-header-safety.t: control bytes in claims and header members (HS256, hs256.jwk)"
# Each token carries the same string S (a JSON string literal, so \r is CR) in a header member,
# a top-level claim, an array element and a nested object.
unsafe_token() { # unsafe_token NAME S
    emit "$1" "HS256, kid hs256, header x = $2, sub alice, exp 2100, name = $2, roles [\"user\", $2], org {\"name\": $2}" \
        "$(gw sign --key $K/hs256.jwk --alg HS256 --kid hs256 --header "{\"x\":$2}" \
            --claims "{\"sub\":\"alice\",\"exp\":$EXP,\"name\":$2,\"roles\":[\"user\",$2],\"org\":{\"name\":$2}}")"
}
unsafe_token HS_CR '"M\rX-Injected: 1"'
unsafe_token HS_LF '"M\nX-Injected: 1"'
unsafe_token HS_CRLF '"M\r\nX-Injected: 1"'
unsafe_token HS_FOLD '"M\r\n X-Injected: 1"'
unsafe_token HS_NUL '"M\u0000X-Injected: 1"'
unsafe_token HS_DEL '"M\u007fX"'
unsafe_token HS_C0 '"M\u0001\u001b[31m\u000b\u000cX"'
unsafe_token HS_UTF8 '"Zo\u00eb\t\u6f22\u5b57 \ud83d\ude00"'
# Raw payload text: JSON allows CR, LF and HTAB between tokens and DEL inside strings.
emit HS_PAYLOAD_CRLF "HS256, kid hs256, raw payload {\"sub\":\"alice\",<CR><LF><CR><LF>\"exp\":4102444800}" \
    "$(gw sign --key $K/hs256.jwk --alg HS256 --kid hs256 --raw-payload-json "$(printf '{"sub":"alice",\r\n\r\n"exp":%s}' $EXP)")"
emit HS_PAYLOAD_DEL "HS256, kid hs256, raw payload {\"sub\":\"alice\",\"exp\":4102444800,\"n\":\"a<DEL>b\"}" \
    "$(gw sign --key $K/hs256.jwk --alg HS256 --kid hs256 --raw-payload-json "$(printf '{"sub":"alice","exp":%s,"n":"a\x7fb"}' $EXP)")"
emit HS_PAYLOAD_TAB "HS256, kid hs256, raw payload {\"sub\":\"alice\",<TAB>\"exp\":4102444800}" \
    "$(gw sign --key $K/hs256.jwk --alg HS256 --kid hs256 --raw-payload-json "$(printf '{"sub":"alice",\t"exp":%s}' $EXP)")"

echo "# ---- t/023-jwt-keys.t: the bound on signature checks for a token without kid"
# Key N of hs256-many.jwks (1-based) as a JWK file of its own.
many_key() { # many_key N -> path of a JWK
    local out="$TMP/many-$1.jwk"
    printf '{"kty":"oct","k":"%s"}' \
        "$(grep -o '"k":"[^"]*"' $K/hs256-many.jwks | sed -n "$1p" | cut -d'"' -f4)" >"$out"
    printf '%s' "$out"
}
for n in 1 8 9 12; do
    emit "MANY_$n" "HS256, no kid, key $n of hs256-many.jwks, sub key$n, exp 2100" \
        "$(gw sign --key "$(many_key $n)" --alg HS256 --claims "{\"sub\":\"key$n\",\"exp\":$EXP}")"
done

echo "# ---- t/053-jwks-keys.t: what a published key set may hold"
emit JWKS_HS_A "key set: hs256.jwk (a published HMAC secret) and JWKS_A's key" \
    "$(jwks_of --jwk $K/hs256.jwk --pub $K/rsa2048.pub.pem --kid rsa2048 --alg RS256 --use sig)"
emit JWKS_HS_ONLY "key set: hmac.jwks, compact (HMAC secrets only)" "$(tr -d ' \n' <$K/hmac.jwks)"
# EdDSA "signed" for the identity point (x = 01 00..00): R = identity, S = 0 verifies any
# message under that public key.
ED_ID_SIG=$(printf '01%0126d' 0 | hex2b64u)
emit ED_IDENTITY_X "the identity point of edwards25519 as a JWK x" "$(printf '01%062d' 0 | hex2b64u)"
emit TOKEN_ED_FORGED "EdDSA, kid ed-zero, sub mallory, exp 2100, signature R = identity, S = 0 (no key)" \
    "$(gw encode-unsigned --raw-header-json '{"alg":"EdDSA","kid":"ed-zero"}' --claims "{\"sub\":\"mallory\",\"exp\":$EXP}" --signature "$ED_ID_SIG")"
# Degenerate public keys next to a good one: each is refused from a key file and skipped from
# a published set. The P-256 point is ec256's with the last base64url character of y changed
# (off the curve); the RSA keys are rsa1024 and rsa2048's modulus with e = 1.
field() { grep -o "\"$2\": *\"[^\"]*\"" "$1" | cut -d'"' -f4; } # field JWK_FILE NAME
EC_Y=$(field $K/ec256.jwk y)
RSA_N=$(field $K/rsa2048.jwk n)
emit JWKS_DEGENERATE "key set: ed-zero (x = ED_IDENTITY_X), rsa1024.jwk, rsa-e1 (rsa2048's n, e = 1), ec-off-curve (ec256, y's last character E), then JWKS_A's key" \
    "$(printf '{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"ed-zero","x":"%s"},{"kty":"RSA","kid":"rsa1024","n":"%s","e":"AQAB"},{"kty":"RSA","kid":"rsa-e1","n":"%s","e":"AQ"},{"kty":"EC","crv":"P-256","kid":"ec-off-curve","x":"%s","y":"%sE"},{"alg":"RS256","e":"AQAB","kid":"rsa2048","kty":"RSA","n":"%s","use":"sig"}]}' \
        "$(printf '01%062d' 0 | hex2b64u)" "$(field $K/rsa1024.jwk n)" "$RSA_N" \
        "$(field $K/ec256.jwk x)" "${EC_Y%?}" "$RSA_N")"

echo "# ---- t/070-policy.t, t/071-policy-source.t: consumers bound to tokens (HS256, t/keys/hs256.jwk)"
hs() { gw sign --key $K/hs256.jwk --alg HS256 --kid hs256 --claims "$1"; }
emit TOKEN_SVC "HS256, kid hs256, iss https://idp.test, sub svc-123, jti t-svc-1, exp 2100" \
    "$(hs "{\"iss\":\"https://idp.test\",\"sub\":\"svc-123\",\"jti\":\"t-svc-1\",\"exp\":$EXP}")"
emit TOKEN_APP "HS256, kid hs256, iss https://idp.test, sub someone, client_id acme-app, exp 2100" \
    "$(hs "{\"iss\":\"https://idp.test\",\"sub\":\"someone\",\"client_id\":\"acme-app\",\"exp\":$EXP}")"
emit TOKEN_BOB "HS256, kid hs256, iss https://idp.test, sub bob, jti t-bob-1, realm_access.roles [orders-read, x], scope \"orders.write admin\", exp 2100" \
    "$(hs "{\"iss\":\"https://idp.test\",\"sub\":\"bob\",\"jti\":\"t-bob-1\",\"realm_access\":{\"roles\":[\"orders-read\",\"x\"]},\"scope\":\"orders.write admin\",\"exp\":$EXP}")"
emit TOKEN_REVOKED "HS256, kid hs256, iss https://idp.test, sub carol, jti t-revoked, exp 2100" \
    "$(hs "{\"iss\":\"https://idp.test\",\"sub\":\"carol\",\"jti\":\"t-revoked\",\"exp\":$EXP}")"
emit TOKEN_DENIED_SUB "HS256, kid hs256, iss https://idp.test, sub mallory, exp 2100" \
    "$(hs "{\"iss\":\"https://idp.test\",\"sub\":\"mallory\",\"exp\":$EXP}")"

echo "# ---- t/025-jwt-parsing.t: escaped member names and values, repeated names (HS256, t/keys/hs256.jwk)"
hs_raw() { gw sign --key $K/hs256.jwk --alg HS256 --raw-header-json "$1" --raw-payload-json "$2"; }
emit ESC_OK "H {\"\\u0061lg\":\"HS256\",\"k\\u0069d\":\"hs256\",\"typ\":\"JWT\"}, P {\"s\\u0075b\":\"al\\u0069ce\",\"iss\":\"https://idp.example/\\u0031\",\"aud\":[\"x\",\"\\u0061pi\"],\"\\u0065xp\":$EXP}" \
    "$(hs_raw '{"\u0061lg":"HS256","k\u0069d":"hs256","typ":"JWT"}' "{\"s\\u0075b\":\"al\\u0069ce\",\"iss\":\"https://idp.example/\\u0031\",\"aud\":[\"x\",\"\\u0061pi\"],\"\\u0065xp\":$EXP}")"
emit ESC_EXPIRED "H {\"alg\":\"HS256\",\"kid\":\"hs256\"}, P {\"sub\":\"alice\",\"\\u0065xp\":$PAST}" \
    "$(hs_raw '{"alg":"HS256","kid":"hs256"}' "{\"sub\":\"alice\",\"\\u0065xp\":$PAST}")"
emit ESC_DUP_SUB "H {\"alg\":\"HS256\",\"kid\":\"hs256\"}, P {\"sub\":\"alice\",\"s\\u0075b\":\"admin\",\"exp\":$EXP}" \
    "$(hs_raw '{"alg":"HS256","kid":"hs256"}' "{\"sub\":\"alice\",\"s\\u0075b\":\"admin\",\"exp\":$EXP}")"
emit ESC_DUP_ALG "H {\"alg\":\"HS256\",\"kid\":\"hs256\",\"\\u0061lg\":\"none\"}, P {\"sub\":\"alice\",\"exp\":$EXP}" \
    "$(hs_raw '{"alg":"HS256","kid":"hs256","\u0061lg":"none"}' "{\"sub\":\"alice\",\"exp\":$EXP}")"
many=$(for i in $(seq 1 40); do printf '"c%d":%d,' "$i" "$i"; done)
emit MANY_OK "H {\"alg\":\"HS256\",\"kid\":\"hs256\"}, P {\"sub\":\"alice\",\"c1\":1, ... \"c40\":40,\"exp\":$EXP}" \
    "$(hs_raw '{"alg":"HS256","kid":"hs256"}' "{\"sub\":\"alice\",${many}\"exp\":$EXP}")"
emit MANY_DUP "H {\"alg\":\"HS256\",\"kid\":\"hs256\"}, P {\"sub\":\"alice\",\"c1\":1, ... \"c40\":40,\"c\\u00337\":0,\"exp\":$EXP}" \
    "$(hs_raw '{"alg":"HS256","kid":"hs256"}' "{\"sub\":\"alice\",${many}\"c\\u00337\":0,\"exp\":$EXP}")"
emit ESC_CTRL "H {\"alg\":\"HS256\",\"kid\":\"hs256\"}, P {\"s\\u0075b\":\"al\\r\\nX-Injected: 1\",\"iss\":\"https://idp.example/\\u000d\\u000aX-Injected: 1\",\"exp\":$EXP}" \
    "$(hs_raw '{"alg":"HS256","kid":"hs256"}' "{\"s\\u0075b\":\"al\\r\\nX-Injected: 1\",\"iss\":\"https://idp.example/\\u000d\\u000aX-Injected: 1\",\"exp\":$EXP}")"
