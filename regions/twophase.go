package regions

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Two-phase commit of a transaction that wrote to several clusters:
//
//  1. PREPARE TRANSACTION gid on every participant (the proxy, on the
//     session's connections). If one fails, ROLLBACK PREPARED on those
//     prepared, and the transaction is rolled back.
//  2. Decide: record "commit" for gid in privata.twophase of the cluster
//     the gid names. The first decision recorded wins: recovery may have
//     recorded "abort" for a transaction it found in doubt.
//  3. COMMIT PREPARED (or ROLLBACK PREPARED, as decided) on every
//     participant, then Forget the decision.
//
// A crash between 1 and 3 leaves prepared transactions behind; Recover,
// run when `privata serve` starts, resolves each as its decision says,
// recording "abort" first when there is none (presumed abort).

// gidPattern is what Privata's global transaction ids look like; each
// participant prepares its part under the gid, a colon and its cluster's
// name (prepared transactions' names are unique per PostgreSQL server,
// which may hold the databases of several participants).
var (
	gidPattern  = regexp.MustCompile(`^privata:[^':]+:[0-9a-f]{32}$`)
	partPattern = regexp.MustCompile(`^(privata:[^':]+:[0-9a-f]{32}):[^':]+$`)
)

// NewGID returns a new global transaction id whose decision is kept in the
// cluster named logTarget.
func NewGID(logTarget string) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return "privata:" + logTarget + ":" + hex.EncodeToString(b)
}

// logTargetOf returns the cluster a gid keeps its decision in.
func logTargetOf(gid string) (string, bool) {
	if !gidPattern.MatchString(gid) {
		return "", false
	}
	return strings.Split(gid, ":")[1], true
}

// PrepareSQL, CommitSQL and RollbackSQL are the statements of each phase
// for gid's part in the cluster named participant. Neither holds a quote:
// gid is NewGID's, and cluster names are checked when the topology is
// built.
func PrepareSQL(gid, participant string) string {
	return "PREPARE TRANSACTION '" + gid + ":" + participant + "'"
}

func CommitSQL(gid, participant string) string {
	return "COMMIT PREPARED '" + gid + ":" + participant + "'"
}

func RollbackSQL(gid, participant string) string {
	return "ROLLBACK PREPARED '" + gid + ":" + participant + "'"
}

// TwoPhase keeps the decisions of two-phase commits.
type TwoPhase struct {
	Pools *Pools
}

// Decide records the decision to commit gid; it reports false when a
// decision to abort was recorded first. An error leaves the outcome
// unknown: the participants stay prepared until Recover resolves them.
func (c *TwoPhase) Decide(ctx context.Context, gid string) (commit bool, err error) {
	d, err := c.record(ctx, gid, "commit")
	return d == "commit", err
}

func (c *TwoPhase) record(ctx context.Context, gid, decision string) (string, error) {
	target, ok := logTargetOf(gid)
	if !ok {
		return "", fmt.Errorf("%q is not a Privata transaction id", gid)
	}
	rows, err := c.Pools.exec(ctx, target, `WITH ins AS (
			INSERT INTO privata.twophase (gid, decision) VALUES ($1, $2)
			ON CONFLICT (gid) DO NOTHING RETURNING decision)
		SELECT decision FROM ins
		UNION ALL SELECT decision FROM privata.twophase WHERE gid = $1
		LIMIT 1`, value{text: gid, known: true}, value{text: decision, known: true})
	if err != nil {
		return "", fmt.Errorf("record the decision of a two-phase commit in cluster %s: %w", target, err)
	}
	return rows[0], nil
}

// Forget removes the decision of gid once every participant followed it.
func (c *TwoPhase) Forget(ctx context.Context, gid string) error {
	target, ok := logTargetOf(gid)
	if !ok {
		return nil
	}
	_, err := c.Pools.exec(ctx, target, `DELETE FROM privata.twophase WHERE gid = $1`,
		value{text: gid, known: true})
	return err
}

// Recovery is what Recover did.
type Recovery struct {
	Committed, RolledBack int
	// Unreachable names the clusters Recover could not reach; their
	// transactions, and those whose decision is kept there, wait for the
	// next run.
	Unreachable []string
}

// Recover resolves the transactions Privata left prepared in every
// cluster, as their decisions say: those prepared more than minAge ago
// (younger ones may belong to a commit in progress).
func (c *TwoPhase) Recover(ctx context.Context, minAge time.Duration) (Recovery, error) {
	var out Recovery
	for _, peer := range c.Pools.topo.Peers {
		target := peer.Target.Name
		rows, err := c.Pools.exec(ctx, target, `SELECT gid FROM pg_catalog.pg_prepared_xacts
			WHERE database = pg_catalog.current_database() AND starts_with(gid, 'privata:')
			  AND prepared < pg_catalog.now() - pg_catalog.make_interval(secs => $1::float8)
			ORDER BY prepared`, value{text: fmt.Sprint(minAge.Seconds()), known: true})
		if err != nil {
			if isConnection(err) {
				out.Unreachable = append(out.Unreachable, target)
				continue
			}
			return out, fmt.Errorf("cluster %s: list prepared transactions: %w", target, err)
		}
		for _, name := range rows {
			m := partPattern.FindStringSubmatch(name)
			if m == nil {
				continue
			}
			decision, err := c.record(ctx, m[1], "abort")
			if err != nil {
				continue // its decision's cluster is down: next time
			}
			sql := "ROLLBACK PREPARED '" + name + "'"
			if decision == "commit" {
				sql = "COMMIT PREPARED '" + name + "'"
			}
			if _, err := c.Pools.exec(ctx, target, sql); err != nil {
				return out, fmt.Errorf("cluster %s: resolve a prepared transaction: %w", target, err)
			}
			if decision == "commit" {
				out.Committed++
			} else {
				out.RolledBack++
			}
		}
		// Decisions every participant has long followed.
		if _, err := c.Pools.exec(ctx, target, `DELETE FROM privata.twophase
			WHERE decided_at < pg_catalog.now() - interval '7 days'`); err != nil && !isConnection(err) {
			return out, fmt.Errorf("cluster %s: forget old decisions: %w", target, err)
		}
	}
	return out, nil
}
