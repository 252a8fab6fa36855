package storage

import (
	"fmt"
	"slices"
	"strings"

	"github.com/privata/privata/policy"
)

// Masks by the type of the column they apply to. A string is any type of
// PostgreSQL's string category (text, varchar, char, citext, domains over
// them); year applies to dates and timestamps; hash to strings, uuid and
// bytea; redact to everything.

var dateTypes = []string{"date", "timestamp without time zone", "timestamp with time zone"}

// masksFor lists the masks that apply to a column, the default first.
func masksFor(c *Column) []string {
	switch {
	case c.Category == "S":
		return []string{"partial", "last4", "initial", "hash", "redact"}
	case slices.Contains(dateTypes, c.BaseType):
		return []string{"year", "redact"}
	case c.BaseType == "uuid" || c.BaseType == "bytea":
		return []string{"redact", "hash"}
	}
	return []string{"redact"}
}

// maskOf returns the mask a column gets: the policy's, or the default for
// its type. It is an error when the policy names a mask that does not
// apply to the column's type.
func maskOf(t *policy.Table, c *Column) (string, error) {
	ok := masksFor(c)
	pc := t.Column(c.Name)
	if pc == nil || pc.Mask == "" {
		return ok[0], nil
	}
	if !slices.Contains(ok, pc.Mask) {
		return "", &policy.Error{Pos: pc.MaskPos,
			Msg: fmt.Sprintf("mask %s does not apply to %s.%s, of type %s",
				pc.Mask, t.Name, c.Name, c.Type),
			Hint: "masks for this column: " + strings.Join(ok, ", ")}
	}
	return pc.Mask, nil
}

// maskExpr is the masked value of column expression col.
func maskExpr(mask, col string, c *Column) string {
	hmac := func(input string) string {
		return "pg_catalog.sha256(k.hash_okey || pg_catalog.sha256(k.hash_ikey || " + input + "))"
	}
	switch mask {
	case "partial", "last4", "initial":
		return "privata.mask_" + mask + "(" + col + "::text)"
	case "year":
		return "privata.mask_year(" + col + "::" + c.BaseType + ")"
	case "hash":
		var v string
		switch c.BaseType {
		case "bytea":
			v = hmac(col + "::bytea")
		case "uuid":
			v = "pg_catalog.encode(pg_catalog.substr(" + hmac("pg_catalog.uuid_send("+col+"::uuid)") +
				", 1, 16), 'hex')::uuid"
		default:
			v = "pg_catalog.encode(" + hmac("pg_catalog.convert_to("+col+"::text, 'UTF8')") + ", 'hex')"
		}
		return "(SELECT " + v + " FROM privata.secrets k)"
	}
	return "NULL"
}

// hasRole is true when the invoker has the privileges of group role g
// (USAGE rather than MEMBER: a NOINHERIT login, the proxy's session login,
// gets a policy role's access only after SET ROLE). privata.has_access is
// IMMUTABLE, so the planner evaluates it once per plan and each CASE of
// valueExpr reduces to one branch: for a role with full access the view
// column is the base column itself, and filters and joins on it use the
// base table's indexes. PostgreSQL plans again when the user or the
// memberships change (see sql/0004_access.sql).
func hasRole(g string) string {
	return "privata.has_access(" + literal(g) + ")"
}

// valueExpr is the access view's expression for column c of table t
// stored in base alias b: the value for roles with full access to its
// class, the masked value for roles with masked access, NULL otherwise.
// Other columns, keys and pseudonyms are plain.
func valueExpr(t *policy.Table, b string, c *Column) (string, error) {
	col := b + "." + ident(c.Name)
	class := t.ClassOf(c.Name)
	if class == policy.Other || strings.HasPrefix(c.Name, "privata_") {
		return col, nil
	}
	mask, err := maskOf(t, c)
	if err != nil {
		return "", err
	}
	e := fmt.Sprintf("CAST(CASE WHEN %s THEN %s\n                 WHEN %s THEN %s END AS %s)",
		hasRole(GroupRole(class, policy.Full)), col,
		hasRole(GroupRole(class, policy.Masked)), maskExpr(mask, col, c), c.Type)
	if c.Collation != "" {
		// The masked branch has the default collation; the view column
		// keeps the table column's.
		e += " COLLATE " + c.Collation
	}
	return e, nil
}
