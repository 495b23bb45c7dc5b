package tokens

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// BenchmarkES256Interleaved compares, in one run, the ES256 paths Latch
// could take through the standard library: golang-jwt's (the big.Int API)
// and the ASN.1 API used by signES256/verifyES256, and for reference only,
// deterministic RFC 6979 signing (not used: it drops the hedged nonce).
func BenchmarkES256Interleaved(b *testing.B) {
	key, err := GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	msg := []byte("eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJpc3MiOiJodHRwczovL2xhdGNoLmV4YW1wbGUifQ")
	sig, err := signES256(key, msg)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("sign=golang-jwt", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := jwt.SigningMethodES256.Sign(string(msg), key); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sign=asn1", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := signES256(key, msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sign=rfc6979-reference", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			d := sha256.Sum256(msg)
			if _, err := key.Sign(nil, d[:], crypto.SHA256); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify=golang-jwt", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := jwt.SigningMethodES256.Verify(string(msg), sig[:], &key.PublicKey); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify=asn1", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !verifyES256(&key.PublicKey, msg, &sig) {
				b.Fatal("verify failed")
			}
		}
	})
	b.Run("verify=raw-ecdsa.VerifyASN1", func(b *testing.B) {
		d := sha256.Sum256(msg)
		der, _ := ecdsa.SignASN1(rand.Reader, key, d[:])
		b.ReportAllocs()
		for b.Loop() {
			if !ecdsa.VerifyASN1(&key.PublicKey, d[:], der) {
				b.Fatal("verify failed")
			}
		}
	})
}

// TestES256InteropWithGolangJWT checks signES256 and verifyES256 against
// golang-jwt's ES256 in both directions, over enough signatures that r and
// s with a leading zero byte and with the top bit set (the DER encodings
// that differ from the raw form) are all exercised.
func TestES256InteropWithGolangJWT(t *testing.T) {
	key, err := GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var leadingZero, topBit int
	for i := 0; i < 3000 || leadingZero == 0 || topBit == 0; i++ {
		if i > 100_000 {
			t.Fatalf("no signature with a leading zero (%d) or top bit (%d) in %d tries", leadingZero, topBit, i)
		}
		msg := []byte{byte(i), byte(i >> 8), byte(i >> 16), 'x'}
		sig, err := signES256(key, msg)
		if err != nil {
			t.Fatal(err)
		}
		if sig[0] == 0 || sig[32] == 0 {
			leadingZero++
		}
		if sig[0]&0x80 != 0 || sig[32]&0x80 != 0 {
			topBit++
		}
		if err := jwt.SigningMethodES256.Verify(string(msg), sig[:], &key.PublicKey); err != nil {
			t.Fatalf("golang-jwt rejects signES256's signature %x: %v", sig, err)
		}
		if !verifyES256(&key.PublicKey, msg, &sig) {
			t.Fatalf("verifyES256 rejects signES256's signature %x", sig)
		}
		if i%10 == 0 { // golang-jwt's signatures verify too
			js, err := jwt.SigningMethodES256.Sign(string(msg), key)
			if err != nil {
				t.Fatal(err)
			}
			var raw [es256Size]byte
			copy(raw[:], js)
			if !verifyES256(&key.PublicKey, msg, &raw) {
				t.Fatalf("verifyES256 rejects golang-jwt's signature %x", raw)
			}
		}
		other := append([]byte(nil), msg...)
		other[3] = 'y'
		if verifyES256(&key.PublicKey, other, &sig) {
			t.Fatal("verifyES256 accepts a signature over another message")
		}
	}
}

// TestVerifyES256RejectsOutOfRange checks the cases the DER conversion
// must not smuggle past crypto/ecdsa: r or s zero (CVE-2022-21449's
// "psychic signature" is r = s = 0), equal to the curve order, or all
// ones; a key on another curve; no key.
func TestVerifyES256RejectsOutOfRange(t *testing.T) {
	key, err := GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("latch")
	good, err := signES256(key, msg)
	if err != nil {
		t.Fatal(err)
	}
	var n [32]byte
	key.Curve.Params().N.FillBytes(n[:])
	var ones [32]byte
	for i := range ones {
		ones[i] = 0xff
	}
	with := func(r, s []byte) *[es256Size]byte {
		var sig [es256Size]byte
		copy(sig[:32], r)
		copy(sig[32:], s)
		return &sig
	}
	zero := make([]byte, 32)
	cases := map[string]*[es256Size]byte{
		"r=s=0":     with(zero, zero),
		"r=0":       with(zero, good[32:]),
		"s=0":       with(good[:32], zero),
		"r=N":       with(n[:], good[32:]),
		"s=N":       with(good[:32], n[:]),
		"r=2^256-1": with(ones[:], good[32:]),
		"s=2^256-1": with(good[:32], ones[:]),
	}
	for name, sig := range cases {
		if verifyES256(&key.PublicKey, msg, sig) {
			t.Errorf("%s: accepted", name)
		}
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if verifyES256(&p384.PublicKey, msg, &good) {
		t.Error("accepted under a P-384 key")
	}
	if verifyES256(nil, msg, &good) || verifyES256(&ecdsa.PublicKey{}, msg, &good) {
		t.Error("accepted without a key")
	}
	if !verifyES256(&key.PublicKey, msg, &good) {
		t.Error("the unmodified signature does not verify")
	}
}

func TestPutScalar(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want string
		ok   bool
	}{
		{[]byte{1}, "0001", true},
		{[]byte{0, 0x80}, "0080", true},
		{[]byte{0x12, 0x34}, "1234", true},
		{[]byte{1, 2, 3}, "", false},
		{[]byte{}, "", false},
		{[]byte{0}, "", false},
	} {
		dst := []byte{0xaa, 0xaa}
		ok := putScalar(dst, tc.in)
		if ok != tc.ok || (ok && fmt.Sprintf("%x", dst) != tc.want) {
			t.Errorf("putScalar(%x) = %x, %v; want %s, %v", tc.in, dst, ok, tc.want, tc.ok)
		}
	}
}

// TestIsBase64URLAlphabet checks the bitmap against the alphabet, byte by
// byte, for all 256 bytes, alone and inside a longer string.
func TestIsBase64URLAlphabet(t *testing.T) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for c := 0; c < 256; c++ {
		want := strings.IndexByte(alphabet, byte(c)) >= 0
		if got := isBase64URL(string([]byte{byte(c)})); got != want {
			t.Errorf("isBase64URL(%q) = %v, want %v", byte(c), got, want)
		}
		if got := isBase64URL("abc" + string([]byte{byte(c)}) + "XYZ"); got != want {
			t.Errorf("isBase64URL(abc%qXYZ) = %v, want %v", byte(c), got, want)
		}
	}
	if !isBase64URL("") || !isBase64URL(alphabet) {
		t.Error("the empty string and the alphabet are base64url")
	}
}
