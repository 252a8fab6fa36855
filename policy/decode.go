package policy

import (
	"fmt"
	"os"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// The YAML documents are decoded strictly (unknown keys and duplicate keys
// are errors) into the types below, which keep the position of every value,
// and then converted to the model in policy.go.

// scalar is a YAML scalar and where it stands.
type scalar struct {
	Value string
	Line  int
	Col   int
}

func (s *scalar) UnmarshalYAML(node ast.Node) error {
	sn, ok := node.(ast.ScalarNode)
	if !ok || node.Type() == ast.NullType {
		return nodeError(node, "expected a single value here, found %s", describe(node))
	}
	tk := node.GetToken()
	s.Line, s.Col = tk.Position.Line, tk.Position.Column
	s.Value = fmt.Sprint(sn.GetValue())
	return nil
}

// entries is a YAML mapping whose keys are names chosen by the user (tables,
// regions, roles), kept in file order with their positions.
type entries[T any] []entry[T]

type entry[T any] struct {
	Key   scalar
	Value T
}

func (e *entries[T]) UnmarshalYAML(node ast.Node) error {
	if node.Type() == ast.NullType {
		return nil
	}
	m, ok := node.(ast.MapNode)
	if !ok {
		return nodeError(node, "expected a mapping of names here, found %s", describe(node))
	}
	// The decoder has already refused duplicate keys.
	for it := m.MapRange(); it.Next(); {
		var key scalar
		if err := key.UnmarshalYAML(it.Key()); err != nil {
			return err
		}
		var v T
		if err := yaml.NodeToValue(it.Value(), &v, yaml.Strict()); err != nil {
			return err
		}
		*e = append(*e, entry[T]{Key: key, Value: v})
	}
	return nil
}

// positionError is an error at a node, raised from our own unmarshalers.
type positionError struct {
	line, col int
	msg       string
}

func (e *positionError) Error() string { return e.msg }

func nodeError(node ast.Node, format string, args ...any) error {
	tk := node.GetToken()
	return &positionError{line: tk.Position.Line, col: tk.Position.Column, msg: sprintf(format, args...)}
}

func describe(node ast.Node) string {
	switch node.Type() {
	case ast.NullType:
		return "nothing"
	case ast.MappingType, ast.MappingValueType:
		return "a mapping"
	case ast.SequenceType:
		return "a list"
	}
	return "a " + node.Type().String()
}

type document struct {
	Version      *scalar              `yaml:"version"`
	Regions      entries[regionDoc]   `yaml:"regions"`
	Residency    *residencyDoc        `yaml:"residency"`
	Unclassified *scalar              `yaml:"unclassified"`
	Subjects     entries[subjectDoc]  `yaml:"subjects"`
	Children     entries[childDoc]    `yaml:"children"`
	Roles        entries[roleDoc]     `yaml:"roles"`
	Transfers    entries[transferDoc] `yaml:"transfers"`
}

func (d *document) empty() bool {
	return d.Version == nil && d.Regions == nil && d.Residency == nil && d.Unclassified == nil &&
		d.Subjects == nil && d.Children == nil && d.Roles == nil && d.Transfers == nil
}

type regionDoc struct {
	Cluster         *scalar `yaml:"cluster"`
	IdentityCluster *scalar `yaml:"identity_cluster"`
	ClinicalCluster *scalar `yaml:"clinical_cluster"`
}

type residencyDoc struct {
	Table    *scalar         `yaml:"table"`
	Column   *scalar         `yaml:"column"`
	Values   entries[scalar] `yaml:"values"`
	Default  *scalar         `yaml:"default"`
	OnChange *scalar         `yaml:"on_region_change"`
}

type subjectDoc struct {
	Schema   *scalar         `yaml:"schema"`
	Key      *scalar         `yaml:"key"`
	Identity []scalar        `yaml:"identity"`
	Clinical []scalar        `yaml:"clinical"`
	Other    []scalar        `yaml:"other"`
	Masks    entries[scalar] `yaml:"masks"`
}

type childDoc struct {
	Schema   *scalar         `yaml:"schema"`
	Subject  *referenceDoc   `yaml:"subject"`
	Clinical []scalar        `yaml:"clinical"`
	Other    []scalar        `yaml:"other"`
	Masks    entries[scalar] `yaml:"masks"`
}

type referenceDoc struct {
	Table  *scalar `yaml:"table"`
	Column *scalar `yaml:"column"`
}

type roleDoc struct {
	PGRole   *scalar `yaml:"pg_role"`
	Identity *scalar `yaml:"identity"`
	Clinical *scalar `yaml:"clinical"`
}

type transferDoc struct {
	From     *scalar  `yaml:"from"`
	To       *scalar  `yaml:"to"`
	Roles    []scalar `yaml:"roles"`
	Purposes []scalar `yaml:"purposes"`
	Classes  []scalar `yaml:"classes"`
	Basis    *scalar  `yaml:"basis"`
}

// decodeFile parses one policy file strictly.
func decodeFile(file string, data []byte) (*document, error) {
	if len(data) >= 3 && string(data[:3]) == "\ufeff" {
		data = data[3:] // a byte-order mark, as some editors write
	}
	// Decoding reads the first document only: a second would be ignored.
	if f, err := parser.ParseBytes(data, 0); err == nil && len(f.Docs) > 1 {
		pos := Pos{File: file, Line: 1, Column: 1}
		if start := f.Docs[1].Start; start != nil {
			pos.Line, pos.Column = start.Position.Line, start.Position.Column
		}
		return nil, &Error{Pos: pos, Msg: "a second YAML document in the policy file",
			Hint: "a policy file holds one document; put another part of the policy in a file of its own " +
				"and list both (policies: in privata.yaml)"}
	}
	var d document
	err := yaml.UnmarshalWithOptions(data, &d, yaml.Strict())
	if err != nil {
		var pe *positionError
		if errorsAs(err, &pe) {
			return nil, &Error{Pos: Pos{File: file, Line: pe.line, Column: pe.col}, Msg: pe.msg}
		}
		return nil, fromYAML(file, err)
	}
	if d.empty() {
		return nil, &Error{Pos: Pos{File: file, Line: 1, Column: 1}, Msg: "the policy file is empty",
			Hint: "a policy starts with `version: 1`; see examples/clinic/policy.yaml"}
	}
	return &d, nil
}

// Load reads the policy files, merges them in the order given and checks the
// result. The error, if any, is an ErrorList.
func Load(files ...string) (*Policy, error) {
	if len(files) == 0 {
		return nil, fmt.Errorf("no policy files given")
	}
	b := newBuilder()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read policy: %w", err)
		}
		d, err := decodeFile(f, data)
		if err != nil {
			return nil, ErrorList{fromYAML(f, err)}
		}
		b.add(f, d)
	}
	return b.finish()
}

// Parse reads a policy from one file's content; file names it in errors.
func Parse(file string, data []byte) (*Policy, error) {
	d, err := decodeFile(file, data)
	if err != nil {
		return nil, ErrorList{fromYAML(file, err)}
	}
	b := newBuilder()
	b.add(file, d)
	return b.finish()
}
