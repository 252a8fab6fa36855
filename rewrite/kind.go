package rewrite

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v5"
)

// Kind is the kind of a statement.
type Kind uint8

// The statement kinds. DDL covers CREATE, ALTER, DROP, COMMENT, SECURITY
// LABEL and SELECT INTO; Utility covers what has no kind of its own
// (VACUUM, ANALYZE, CLUSTER, REINDEX, CHECKPOINT, LOAD, REFRESH
// MATERIALIZED VIEW, SET CONSTRAINTS, ...).
const (
	Utility Kind = iota
	Select
	Insert
	Update
	Delete
	Merge
	CopyFrom
	CopyTo
	DDL
	Truncate
	Grant // GRANT, REVOKE, ALTER DEFAULT PRIVILEGES, GRANT/REVOKE role
	Transaction
	Set
	Reset
	Discard
	Show
	Listen
	Unlisten
	Notify
	Call
	Do
	Explain
	Prepare
	Execute
	Deallocate
	Declare
	Fetch // FETCH and MOVE
	Close
	Lock
)

var kindNames = [...]string{
	Utility: "utility", Select: "select", Insert: "insert", Update: "update",
	Delete: "delete", Merge: "merge", CopyFrom: "copy_from", CopyTo: "copy_to",
	DDL: "ddl", Truncate: "truncate", Grant: "grant", Transaction: "transaction",
	Set: "set", Reset: "reset", Discard: "discard", Show: "show", Listen: "listen",
	Unlisten: "unlisten", Notify: "notify", Call: "call", Do: "do", Explain: "explain",
	Prepare: "prepare", Execute: "execute", Deallocate: "deallocate",
	Declare: "declare", Fetch: "fetch", Close: "close", Lock: "lock",
}

// String returns the kind's name in snake case ("copy_from"), fit for a
// metrics label.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// kindAndTag returns the kind of a statement node and the command tag
// PostgreSQL reports for it (CreateCommandTag in PostgreSQL's utility.c).
func kindAndTag(n *pg.Node) (Kind, string) {
	switch s := n.Node.(type) {
	case *pg.Node_SelectStmt:
		if selectInto(s.SelectStmt) != nil {
			return DDL, "SELECT"
		}
		return Select, "SELECT"
	case *pg.Node_InsertStmt:
		return Insert, "INSERT"
	case *pg.Node_UpdateStmt:
		return Update, "UPDATE"
	case *pg.Node_DeleteStmt:
		return Delete, "DELETE"
	case *pg.Node_MergeStmt:
		return Merge, "MERGE"
	case *pg.Node_CopyStmt:
		if s.CopyStmt.IsFrom {
			return CopyFrom, "COPY"
		}
		return CopyTo, "COPY"
	case *pg.Node_TransactionStmt:
		return Transaction, transactionTag(s.TransactionStmt.Kind)
	case *pg.Node_VariableSetStmt:
		switch s.VariableSetStmt.Kind {
		case pg.VariableSetKind_VAR_RESET, pg.VariableSetKind_VAR_RESET_ALL:
			return Reset, "RESET"
		}
		return Set, "SET"
	case *pg.Node_VariableShowStmt:
		return Show, "SHOW"
	case *pg.Node_DiscardStmt:
		return Discard, discardTag(s.DiscardStmt.Target)
	case *pg.Node_ListenStmt:
		return Listen, "LISTEN"
	case *pg.Node_UnlistenStmt:
		return Unlisten, "UNLISTEN"
	case *pg.Node_NotifyStmt:
		return Notify, "NOTIFY"
	case *pg.Node_CallStmt:
		return Call, "CALL"
	case *pg.Node_DoStmt:
		return Do, "DO"
	case *pg.Node_ExplainStmt:
		return Explain, "EXPLAIN"
	case *pg.Node_PrepareStmt:
		return Prepare, "PREPARE"
	case *pg.Node_ExecuteStmt:
		return Execute, "EXECUTE"
	case *pg.Node_DeallocateStmt:
		if s.DeallocateStmt.Name == "" {
			return Deallocate, "DEALLOCATE ALL"
		}
		return Deallocate, "DEALLOCATE"
	case *pg.Node_DeclareCursorStmt:
		return Declare, "DECLARE CURSOR"
	case *pg.Node_FetchStmt:
		if s.FetchStmt.Ismove {
			return Fetch, "MOVE"
		}
		return Fetch, "FETCH"
	case *pg.Node_ClosePortalStmt:
		if s.ClosePortalStmt.Portalname == "" {
			return Close, "CLOSE CURSOR ALL"
		}
		return Close, "CLOSE CURSOR"
	case *pg.Node_LockStmt:
		return Lock, "LOCK TABLE"
	case *pg.Node_TruncateStmt:
		return Truncate, "TRUNCATE TABLE"
	case *pg.Node_GrantStmt:
		if s.GrantStmt.IsGrant {
			return Grant, "GRANT"
		}
		return Grant, "REVOKE"
	case *pg.Node_GrantRoleStmt:
		if s.GrantRoleStmt.IsGrant {
			return Grant, "GRANT ROLE"
		}
		return Grant, "REVOKE ROLE"
	case *pg.Node_AlterDefaultPrivilegesStmt:
		return Grant, "ALTER DEFAULT PRIVILEGES"
	}
	if tag := utilityTag(n); tag != "" {
		return Utility, tag
	}
	return DDL, ddlTag(n)
}

func transactionTag(k pg.TransactionStmtKind) string {
	switch k {
	case pg.TransactionStmtKind_TRANS_STMT_BEGIN:
		return "BEGIN"
	case pg.TransactionStmtKind_TRANS_STMT_START:
		return "START TRANSACTION"
	case pg.TransactionStmtKind_TRANS_STMT_COMMIT:
		return "COMMIT"
	case pg.TransactionStmtKind_TRANS_STMT_ROLLBACK, pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:
		return "ROLLBACK"
	case pg.TransactionStmtKind_TRANS_STMT_SAVEPOINT:
		return "SAVEPOINT"
	case pg.TransactionStmtKind_TRANS_STMT_RELEASE:
		return "RELEASE"
	case pg.TransactionStmtKind_TRANS_STMT_PREPARE:
		return "PREPARE TRANSACTION"
	case pg.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED:
		return "COMMIT PREPARED"
	case pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED:
		return "ROLLBACK PREPARED"
	}
	return "???"
}

func discardTag(m pg.DiscardMode) string {
	switch m {
	case pg.DiscardMode_DISCARD_PLANS:
		return "DISCARD PLANS"
	case pg.DiscardMode_DISCARD_SEQUENCES:
		return "DISCARD SEQUENCES"
	case pg.DiscardMode_DISCARD_TEMP:
		return "DISCARD TEMP"
	}
	return "DISCARD ALL"
}

// utilityTag returns the tag of the commands of kind Utility, or "".
func utilityTag(n *pg.Node) string {
	switch s := n.Node.(type) {
	case *pg.Node_VacuumStmt:
		if s.VacuumStmt.IsVacuumcmd {
			return "VACUUM"
		}
		return "ANALYZE"
	case *pg.Node_ClusterStmt:
		return "CLUSTER"
	case *pg.Node_ReindexStmt:
		return "REINDEX"
	case *pg.Node_CheckPointStmt:
		return "CHECKPOINT"
	case *pg.Node_LoadStmt:
		return "LOAD"
	case *pg.Node_RefreshMatViewStmt:
		return "REFRESH MATERIALIZED VIEW"
	case *pg.Node_ConstraintsSetStmt:
		return "SET CONSTRAINTS"
	case *pg.Node_ReassignOwnedStmt:
		return "REASSIGN OWNED"
	}
	return ""
}

// ddlTag returns the tag of a DDL statement.
func ddlTag(n *pg.Node) string {
	switch s := n.Node.(type) {
	case *pg.Node_CreateStmt:
		return "CREATE TABLE"
	case *pg.Node_CreateTableAsStmt:
		// PostgreSQL reports the rows it stored, as SELECT n, unless the
		// statement says WITH NO DATA.
		switch into := s.CreateTableAsStmt.Into; {
		case s.CreateTableAsStmt.IsSelectInto, into == nil || !into.SkipData:
			return "SELECT"
		case s.CreateTableAsStmt.Objtype == pg.ObjectType_OBJECT_MATVIEW:
			return "CREATE MATERIALIZED VIEW"
		}
		return "CREATE TABLE AS"
	case *pg.Node_ViewStmt:
		return "CREATE VIEW"
	case *pg.Node_IndexStmt:
		return "CREATE INDEX"
	case *pg.Node_CreateSeqStmt:
		return "CREATE SEQUENCE"
	case *pg.Node_AlterSeqStmt:
		return "ALTER SEQUENCE"
	case *pg.Node_CreateSchemaStmt:
		return "CREATE SCHEMA"
	case *pg.Node_CreateFunctionStmt:
		if s.CreateFunctionStmt.IsProcedure {
			return "CREATE PROCEDURE"
		}
		return "CREATE FUNCTION"
	case *pg.Node_AlterFunctionStmt:
		return "ALTER " + objectWords(s.AlterFunctionStmt.Objtype)
	case *pg.Node_CreateTrigStmt:
		return "CREATE TRIGGER"
	case *pg.Node_RuleStmt:
		return "CREATE RULE"
	case *pg.Node_CreateDomainStmt:
		return "CREATE DOMAIN"
	case *pg.Node_AlterDomainStmt:
		return "ALTER DOMAIN"
	case *pg.Node_CompositeTypeStmt, *pg.Node_CreateEnumStmt, *pg.Node_CreateRangeStmt:
		return "CREATE TYPE"
	case *pg.Node_AlterEnumStmt, *pg.Node_AlterTypeStmt:
		return "ALTER TYPE"
	case *pg.Node_DefineStmt:
		return "CREATE " + objectWords(s.DefineStmt.Kind)
	case *pg.Node_CreateExtensionStmt:
		return "CREATE EXTENSION"
	case *pg.Node_AlterExtensionStmt, *pg.Node_AlterExtensionContentsStmt:
		return "ALTER EXTENSION"
	case *pg.Node_CreatedbStmt:
		return "CREATE DATABASE"
	case *pg.Node_AlterDatabaseStmt, *pg.Node_AlterDatabaseSetStmt,
		*pg.Node_AlterDatabaseRefreshCollStmt:
		return "ALTER DATABASE"
	case *pg.Node_DropdbStmt:
		return "DROP DATABASE"
	case *pg.Node_CreateRoleStmt:
		return "CREATE ROLE"
	case *pg.Node_AlterRoleStmt, *pg.Node_AlterRoleSetStmt:
		return "ALTER ROLE"
	case *pg.Node_DropRoleStmt:
		return "DROP ROLE"
	case *pg.Node_DropOwnedStmt:
		return "DROP OWNED"
	case *pg.Node_AlterSystemStmt:
		return "ALTER SYSTEM"
	case *pg.Node_DropStmt:
		return "DROP " + objectWords(s.DropStmt.RemoveType)
	case *pg.Node_AlterTableStmt:
		return "ALTER " + objectWords(s.AlterTableStmt.Objtype)
	case *pg.Node_AlterTableMoveAllStmt:
		return "ALTER " + objectWords(s.AlterTableMoveAllStmt.Objtype)
	case *pg.Node_RenameStmt:
		if s.RenameStmt.RenameType == pg.ObjectType_OBJECT_COLUMN {
			return "ALTER " + objectWords(s.RenameStmt.RelationType)
		}
		return "ALTER " + objectWords(s.RenameStmt.RenameType)
	case *pg.Node_AlterObjectSchemaStmt:
		return "ALTER " + objectWords(s.AlterObjectSchemaStmt.ObjectType)
	case *pg.Node_AlterOwnerStmt:
		return "ALTER " + objectWords(s.AlterOwnerStmt.ObjectType)
	case *pg.Node_AlterObjectDependsStmt:
		return "ALTER " + objectWords(s.AlterObjectDependsStmt.ObjectType)
	case *pg.Node_CommentStmt:
		return "COMMENT"
	case *pg.Node_SecLabelStmt:
		return "SECURITY LABEL"
	case *pg.Node_CreatePolicyStmt:
		return "CREATE POLICY"
	case *pg.Node_AlterPolicyStmt:
		return "ALTER POLICY"
	case *pg.Node_CreateTableSpaceStmt:
		return "CREATE TABLESPACE"
	case *pg.Node_DropTableSpaceStmt:
		return "DROP TABLESPACE"
	case *pg.Node_AlterTableSpaceOptionsStmt:
		return "ALTER TABLESPACE"
	case *pg.Node_CreateFdwStmt:
		return "CREATE FOREIGN DATA WRAPPER"
	case *pg.Node_AlterFdwStmt:
		return "ALTER FOREIGN DATA WRAPPER"
	case *pg.Node_CreateForeignServerStmt:
		return "CREATE SERVER"
	case *pg.Node_AlterForeignServerStmt:
		return "ALTER SERVER"
	case *pg.Node_CreateForeignTableStmt:
		return "CREATE FOREIGN TABLE"
	case *pg.Node_CreateUserMappingStmt:
		return "CREATE USER MAPPING"
	case *pg.Node_AlterUserMappingStmt:
		return "ALTER USER MAPPING"
	case *pg.Node_DropUserMappingStmt:
		return "DROP USER MAPPING"
	case *pg.Node_ImportForeignSchemaStmt:
		return "IMPORT FOREIGN SCHEMA"
	case *pg.Node_CreateEventTrigStmt:
		return "CREATE EVENT TRIGGER"
	case *pg.Node_AlterEventTrigStmt:
		return "ALTER EVENT TRIGGER"
	case *pg.Node_CreatePlangStmt:
		return "CREATE LANGUAGE"
	case *pg.Node_CreateConversionStmt:
		return "CREATE CONVERSION"
	case *pg.Node_CreateCastStmt:
		return "CREATE CAST"
	case *pg.Node_CreateTransformStmt:
		return "CREATE TRANSFORM"
	case *pg.Node_CreateOpClassStmt:
		return "CREATE OPERATOR CLASS"
	case *pg.Node_CreateOpFamilyStmt:
		return "CREATE OPERATOR FAMILY"
	case *pg.Node_AlterOpFamilyStmt:
		return "ALTER OPERATOR FAMILY"
	case *pg.Node_AlterOperatorStmt:
		return "ALTER OPERATOR"
	case *pg.Node_AlterCollationStmt:
		return "ALTER COLLATION"
	case *pg.Node_AlterTsdictionaryStmt:
		return "ALTER TEXT SEARCH DICTIONARY"
	case *pg.Node_AlterTsconfigurationStmt:
		return "ALTER TEXT SEARCH CONFIGURATION"
	case *pg.Node_CreateAmStmt:
		return "CREATE ACCESS METHOD"
	case *pg.Node_CreatePublicationStmt:
		return "CREATE PUBLICATION"
	case *pg.Node_AlterPublicationStmt:
		return "ALTER PUBLICATION"
	case *pg.Node_CreateSubscriptionStmt:
		return "CREATE SUBSCRIPTION"
	case *pg.Node_AlterSubscriptionStmt:
		return "ALTER SUBSCRIPTION"
	case *pg.Node_DropSubscriptionStmt:
		return "DROP SUBSCRIPTION"
	case *pg.Node_CreateStatsStmt:
		return "CREATE STATISTICS"
	case *pg.Node_AlterStatsStmt:
		return "ALTER STATISTICS"
	}
	return "???"
}

// objectWords spells an object type the way command tags do ("MATERIALIZED
// VIEW", "TEXT SEARCH CONFIGURATION").
func objectWords(t pg.ObjectType) string {
	switch t {
	case pg.ObjectType_OBJECT_MATVIEW:
		return "MATERIALIZED VIEW"
	case pg.ObjectType_OBJECT_FDW:
		return "FOREIGN DATA WRAPPER"
	case pg.ObjectType_OBJECT_FOREIGN_SERVER:
		return "SERVER"
	case pg.ObjectType_OBJECT_OPCLASS:
		return "OPERATOR CLASS"
	case pg.ObjectType_OBJECT_OPFAMILY, pg.ObjectType_OBJECT_AMOP, pg.ObjectType_OBJECT_AMPROC:
		return "OPERATOR FAMILY"
	case pg.ObjectType_OBJECT_TSCONFIGURATION:
		return "TEXT SEARCH CONFIGURATION"
	case pg.ObjectType_OBJECT_TSDICTIONARY:
		return "TEXT SEARCH DICTIONARY"
	case pg.ObjectType_OBJECT_TSPARSER:
		return "TEXT SEARCH PARSER"
	case pg.ObjectType_OBJECT_TSTEMPLATE:
		return "TEXT SEARCH TEMPLATE"
	case pg.ObjectType_OBJECT_STATISTIC_EXT:
		return "STATISTICS"
	case pg.ObjectType_OBJECT_LARGEOBJECT:
		return "LARGE OBJECT"
	case pg.ObjectType_OBJECT_COLUMN, pg.ObjectType_OBJECT_TABCONSTRAINT:
		return "TABLE"
	case pg.ObjectType_OBJECT_ATTRIBUTE:
		return "TYPE"
	case pg.ObjectType_OBJECT_DOMCONSTRAINT:
		return "DOMAIN"
	}
	name := strings.TrimPrefix(t.String(), "OBJECT_")
	return strings.ReplaceAll(name, "_", " ")
}
