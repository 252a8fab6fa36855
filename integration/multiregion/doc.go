// Package multiregion holds the end-to-end tests of regions: real
// clusters, one per region, the schema split by `privata apply`, clients
// that reach them only through `privata serve`, and checks that read each
// cluster directly: where every subject's identity is (and is not), how
// each kind of statement is routed, what crosses regions and under which
// transfer, and what happens when a region's cluster stops.
package multiregion
