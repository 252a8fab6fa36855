package proxy

import (
	"encoding/json"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

func TestBindParamsReadValuesFormatsAndTypes(t *testing.T) {
	parse, err := (&pgproto3.Parse{Name: "s1", Query: "INSERT INTO t VALUES ($1, $2, $3)",
		ParameterOIDs: []uint32{25, 0}}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	bind, err := (&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s1",
		ParameterFormatCodes: []int16{0, 1, 0}, Parameters: [][]byte{[]byte("Stockholm"), {1, 2}, nil},
		ResultFormatCodes: []int16{1}}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	params, ok := bindParams(bind[5:], parse[5:])
	if !ok || len(params) != 3 {
		t.Fatalf("params %v, ok %v", params, ok)
	}
	if string(params[0].Value) != "Stockholm" || params[0].Binary || params[0].OID != 25 {
		t.Errorf("first: %+v", params[0])
	}
	if !params[1].Binary || len(params[1].Value) != 2 || params[1].OID != 0 {
		t.Errorf("second: %+v", params[1])
	}
	if !params[2].Null {
		t.Errorf("third: %+v", params[2])
	}
	if got := parseText(parse[5:]); got != "INSERT INTO t VALUES ($1, $2, $3)" {
		t.Errorf("text %q", got)
	}

	// One format code applies to every parameter.
	bind, _ = (&pgproto3.Bind{ParameterFormatCodes: []int16{1},
		Parameters: [][]byte{{1}, {2}}}).Encode(nil)
	if params, ok := bindParams(bind[5:], parse[5:]); !ok || !params[0].Binary || !params[1].Binary {
		t.Errorf("one format for all: %+v", params)
	}
	// A truncated Bind is not read.
	if _, ok := bindParams(bind[5:len(bind)-4], parse[5:]); ok {
		t.Errorf("a truncated Bind was read")
	}
}

func TestFirstColumn(t *testing.T) {
	row, _ := (&pgproto3.DataRow{Values: [][]byte{[]byte("eu"), []byte("x")}}).Encode(nil)
	if got := string(firstColumn(row[5:])); got != "eu" {
		t.Errorf("first column %q", got)
	}
	null, _ := (&pgproto3.DataRow{Values: [][]byte{nil}}).Encode(nil)
	if got := firstColumn(null[5:]); got != nil {
		t.Errorf("NULL first column %q", got)
	}
	if got := firstColumn([]byte{0, 1, 0, 0, 0, 9, 'a'}); got != nil {
		t.Errorf("a truncated row gave %q", got)
	}
}

func TestWithValuesSetsTextAndNull(t *testing.T) {
	text := "Texas"
	row, err := withValues([]byte(`{"id": "a", "state": "Stockholm", "income": 12.5, "city": "Solna"}`),
		map[string]*string{"state": &text, "city": nil})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(row, &got); err != nil {
		t.Fatal(err)
	}
	if got["state"] != "Texas" || got["city"] != nil || got["income"] != 12.5 || got["id"] != "a" {
		t.Fatalf("row %s", row)
	}
	if _, err := withValues([]byte(`{"id": "a"}`), map[string]*string{"nope": &text}); err == nil {
		t.Fatalf("a column the row lacks was accepted")
	}
}
