package fdw

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/privata/privata/config"
	"github.com/privata/privata/policy"
	"github.com/privata/privata/storage"
)

// The schemas Privata keeps for cross-region reads, in every cluster.
const (
	// ExportSchema holds one view per classified table: what other
	// clusters read of this one, by pseudonym, each value shown as the
	// reading role may see it.
	ExportSchema = "privata_export"
	// GlobalSchema holds one view per classified table: this cluster's
	// rows and every other region's.
	GlobalSchema = "privata_global"
	// RegionSchemaPrefix starts the name of the schema holding the
	// foreign tables of another cluster, e.g. privata_region_eu.
	RegionSchemaPrefix = "privata_region_"
)

// The columns every export and global view starts with.
const (
	RegionColumn    = storage.RegionColumn
	PseudonymColumn = storage.PseudonymColumn
)

// ExportRole names the login role other clusters read this one as, for
// a reader with access identity and clinical to the two classes, e.g.
// privata_export_none_full.
func ExportRole(identity, clinical policy.Access) string {
	return storage.ExportRolePrefix + string(identity) + "_" + string(clinical)
}

// Topology is every cluster of a configuration, with the regions each
// serves and how the others reach it over postgres_fdw.
type Topology struct {
	Policy *policy.Policy
	Peers  []*Peer
}

// Peer is one cluster (one storage.Target) as the other clusters see it.
type Peer struct {
	Target storage.Target
	// Server is the name of the foreign server other clusters reach this
	// one by: its regions, joined by "+" when it serves several. It is
	// what postgres_fdw's errors name ("could not connect to server").
	Server string
	// Options are the foreign server's options: host, port, dbname,
	// sslmode and Privata's settings.
	Options [][2]string
	// Password is the export roles' password; "" when the configuration
	// gives none. It is never printed.
	Password string
}

// Schema is the schema of this peer's foreign tables in other clusters.
func (p *Peer) Schema() string { return RegionSchemaPrefix + p.Server }

// Serves reports whether the peer stores subjects of region r.
func (p *Peer) Serves(r string) bool { return slices.Contains(p.Target.Regions, r) }

// clusterName is what a cluster's name may hold: it appears in prepared
// transactions' names and in comments.
var clusterName = regexp.MustCompile(`^[A-Za-z0-9_.+-]+$`)

// NewTopology resolves the clusters of cfg that hold the policy's regions.
func NewTopology(cfg *config.Config, p *policy.Policy, targets []storage.Target) (*Topology, error) {
	t := &Topology{Policy: p}
	// Databases of one PostgreSQL cluster share its roles, the export
	// roles among them, and so their password.
	byServer := map[string]*Peer{}
	for _, tg := range targets {
		if !clusterName.MatchString(tg.Name) {
			return nil, fmt.Errorf("cluster name %q: use letters, digits, _, -, . and +", tg.Name)
		}
		peer := &Peer{Target: tg, Server: strings.Join(tg.Regions, "+")}
		cl := clusterOf(cfg, p, tg)
		var f config.FDW
		if cl != nil && cl.FDW != nil {
			f = *cl.FDW
		}
		peer.Password = string(f.Password)
		cc, err := pgconn.ParseConfig(tg.URL)
		if err != nil {
			return nil, fmt.Errorf("cluster %s: url cannot be parsed", tg.Name)
		}
		host, port, db := cc.Host, int(cc.Port), cc.Database
		at := fmt.Sprintf("%s:%d", host, port)
		if other := byServer[at]; other != nil && other.Password != peer.Password {
			return nil, fmt.Errorf("clusters %s and %s are databases of one PostgreSQL server, whose "+
				"roles they share; give them the same fdw password", other.Target.Name, tg.Name)
		}
		byServer[at] = peer
		if f.Host != "" {
			host = f.Host
		}
		if f.Port != 0 {
			port = f.Port
		}
		if f.DBName != "" {
			db = f.DBName
		}
		ssl := f.SSLMode
		if ssl == "" {
			ssl = sslModeOf(tg.URL)
		}
		peer.Options = [][2]string{
			{"host", host}, {"port", strconv.Itoa(port)}, {"dbname", db}, {"sslmode", ssl},
			// Privata's reads show up as such in pg_stat_activity there.
			{"application_name", "privata_fdw"},
			// Several regions' foreign scans under one Append run at once.
			{"async_capable", "true"},
			// Fewer round trips when rows must come back (aggregates that
			// cannot be pushed down).
			{"fetch_size", "10000"},
		}
		t.Peers = append(t.Peers, peer)
	}
	return t, nil
}

// clusterOf returns the configuration of the cluster behind a target (the
// first, when several names share the database).
func clusterOf(cfg *config.Config, p *policy.Policy, tg storage.Target) *config.Cluster {
	for _, r := range tg.Regions {
		if reg := p.Region(r); reg != nil && cfg.Clusters[reg.Cluster] != nil {
			return cfg.Clusters[reg.Cluster]
		}
	}
	return nil
}

// sslModeOf reads the sslmode a connection string asks for; prefer, as
// libpq does, when it names none.
func sslModeOf(conn string) string {
	if u, err := url.Parse(conn); err == nil && u.Scheme != "" {
		if m := u.Query().Get("sslmode"); m != "" {
			return m
		}
		return "prefer"
	}
	for _, f := range strings.Fields(conn) {
		if v, ok := strings.CutPrefix(f, "sslmode="); ok {
			return v
		}
	}
	return "prefer"
}

// Peer returns the peer whose target is named name, or nil.
func (t *Topology) Peer(name string) *Peer {
	for _, p := range t.Peers {
		if p.Target.Name == name {
			return p
		}
	}
	return nil
}

// PeerOf returns the peer that stores subjects of region r, or nil.
func (t *Topology) PeerOf(r string) *Peer {
	for _, p := range t.Peers {
		if p.Serves(r) {
			return p
		}
	}
	return nil
}

// PeerBySchema returns the peer whose foreign tables live in schema s, or nil.
func (t *Topology) PeerBySchema(s string) *Peer {
	for _, p := range t.Peers {
		if p.Schema() == s {
			return p
		}
	}
	return nil
}

// Others returns every peer but local, in order.
func (t *Topology) Others(local *Peer) []*Peer {
	return slices.DeleteFunc(slices.Clone(t.Peers), func(p *Peer) bool { return p == local })
}

// Import is what a cluster reads from one other cluster: the mapping of
// each local policy role to the export role it reads as there.
type Import struct {
	From *Peer
	// Mappings maps the PostgreSQL role of each policy role that a
	// transfer lets read from this peer to the export role it reads as.
	Mappings map[string]string
	// Transfers are the transfers behind the mappings.
	Transfers []*policy.Transfer
}

// Imports returns what local reads from each other peer, for the peers
// whose regions some transfer lets into local's regions.
func (t *Topology) Imports(local *Peer) []*Import {
	var out []*Import
	for _, from := range t.Others(local) {
		im := &Import{From: from, Mappings: map[string]string{}}
		classes := map[string]map[policy.Class]bool{}
		for _, tr := range t.Policy.Transfers {
			if !from.Serves(tr.From) || !local.Serves(tr.To) {
				continue
			}
			im.Transfers = append(im.Transfers, tr)
			for _, name := range tr.Roles {
				if classes[name] == nil {
					classes[name] = map[policy.Class]bool{}
				}
				for _, c := range tr.Classes {
					classes[name][c] = true
				}
			}
		}
		if len(im.Transfers) == 0 {
			continue
		}
		for name, cs := range classes {
			r := t.Policy.Role(name)
			im.Mappings[r.PGRole] = exportRoleFor(r, cs)
		}
		out = append(out, im)
	}
	return out
}

// exportRoleFor is the export role a policy role reads another cluster as
// when transfers let it read classes cs: its own access to each class it
// may read, none to the others.
func exportRoleFor(r *policy.Role, cs map[policy.Class]bool) string {
	access := func(c policy.Class) policy.Access {
		if cs[c] {
			return r.AccessTo(c)
		}
		return policy.None
	}
	return ExportRole(access(policy.Identity), access(policy.Clinical))
}

// ExportRoles returns the export roles other clusters read local as,
// sorted.
func (t *Topology) ExportRoles(local *Peer) []string {
	var out []string
	for _, to := range t.Others(local) {
		for _, im := range t.Imports(to) {
			if im.From != local {
				continue
			}
			for _, role := range im.Mappings {
				if !slices.Contains(out, role) {
					out = append(out, role)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}
