package regions

import (
	"encoding/hex"
	"unicode/utf8"

	"github.com/privata/privata/rewrite"
)

// Param is a parameter value a client bound (extended protocol).
type Param struct {
	Value  []byte
	Null   bool
	Binary bool
	// OID is the parameter's type as the client's Parse declared it; 0
	// when it left it to the server.
	OID uint32
}

// Types whose binary form is their text in UTF-8.
const (
	oidText    = 25
	oidVarchar = 1043
	oidBpchar  = 1042
	oidName    = 19
)

// value is a value routing compares: a constant of the text or a bound
// parameter.
type value struct {
	text  string
	null  bool
	known bool // text or null holds the value
	// param is set for a bound parameter whose text form routing does not
	// know (a binary value of another type): a cluster evaluates it.
	param *Param
}

// resolve turns a hinted value into a value, using the bound parameters.
func resolve(v rewrite.Value, params []Param) value {
	switch {
	case v.Unknown, v.Default:
		return value{}
	case v.Param > 0:
		if v.Param > len(params) {
			return value{}
		}
		p := params[v.Param-1]
		switch {
		case p.Null:
			return value{null: true, known: true}
		case !p.Binary:
			return value{text: string(p.Value), known: true}
		case (p.OID == oidText || p.OID == oidVarchar || p.OID == oidBpchar || p.OID == oidName) &&
			utf8.Valid(p.Value):
			return value{text: string(p.Value), known: true}
		}
		return value{param: &p}
	case v.Null:
		return value{null: true, known: true}
	}
	return value{text: v.Const, known: true}
}

// usable reports whether the value can be compared or looked up.
func (v value) usable() bool { return v.known || v.param != nil }

// key identifies the value in the directory's cache.
func (v value) key() string {
	if v.param != nil {
		return "b:" + hex.EncodeToString(v.param.Value)
	}
	return "t:" + v.text
}
