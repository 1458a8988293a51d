package csta

import (
	"errors"
	"strings"
	"testing"
)

// Hostile documents of the largest size a SIP body may have (64 KiB): each
// must be refused, and cheaply. The benchmarks report what a refusal costs:
//
//	go test ./csta -run '^$' -bench Bomb -benchmem
var bombs = []struct {
	name string
	doc  string
	want error
}{
	{"deep-nesting", strings.Repeat("<a>", 21000), ErrTooDeep},
	{"element-count", "<r>" + strings.Repeat("<a/>", 16000) + "</r>", ErrTooManyElements},
	{"billion-laughs", `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><lolz>&lol2;</lolz>`, ErrForbiddenMarkup},
	{"external-entity", `<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>`, ErrForbiddenMarkup},
	{"undeclared-entity", "<r>" + strings.Repeat("&lol;", 13000) + "</r>", ErrUnknownEntity},
	{"text-pieces", "<r>" + strings.Repeat("a<!---->", 8000) + "</r>", ErrTooManyElements},
	{"namespace-flood", "<r" + strings.Repeat(` xmlns:p="u"`, 5000) + "/>", ErrTooManyElements},
	{"oversized", "<r>" + strings.Repeat("x", 70000) + "</r>", ErrTooLarge},
}

func TestBombsRefused(t *testing.T) {
	for _, b := range bombs {
		_, err := Decode([]byte(b.doc))
		if !errors.Is(err, b.want) {
			t.Errorf("%s: got %v, want %v", b.name, err, b.want)
		}
	}
}

func BenchmarkBomb(b *testing.B) {
	for _, bomb := range bombs {
		doc := []byte(bomb.doc)
		b.Run(bomb.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(doc)))
			for b.Loop() {
				if _, err := Decode(doc); err == nil {
					b.Fatal("accepted")
				}
			}
		})
	}
}
