//! Statements about the tenant's objects: which kinds of object a DROP, COMMENT, rename or
//! GRANT may name, how their names may be written, and which ALTER TABLE actions lose data or
//! give the object away.

use pg_query::NodeEnum as N;
use pg_query::protobuf::{self as pb, AlterTableType as At, ObjectType as Ot};

use super::{
    reserved, reserved_error, row_security, rule, schema_qualified, schema_statement,
    server_objects, strings_of, unsupported,
};
use crate::lint::Sink;

/// Checks a list-of-strings object name whose last `parts` strings name the object itself
/// (`[table]` is 1, `[table, column]` is 2): more is a schema. `relation` is the position of the
/// relation's name in the list, from the end, when one is named.
fn object_name(item: &pb::Node, parts: usize, relation: Option<usize>, s: &mut Sink) {
    let Some(N::List(list)) = item.node.as_ref() else {
        return; // TypeName and ObjectWithArgs: the tree walk reads them.
    };
    let names = strings_of(&list.items);
    if names.len() > parts {
        schema_qualified(&names.join("."), "an object", s);
    }
    if let Some(from_end) = relation
        && let Some(name) = names.len().checked_sub(from_end + 1).map(|i| names[i])
        && reserved(name)
    {
        reserved_error(name, s);
    }
}

pub(super) fn alter_table(a: &pb::AlterTableStmt, s: &mut Sink) {
    if a.objtype == Ot::ObjectForeignTable as i32 {
        server_objects(s);
    }
    for cmd in &a.cmds {
        let Some(N::AlterTableCmd(cmd)) = cmd.node.as_ref() else {
            continue;
        };
        match At::try_from(cmd.subtype).unwrap_or(At::Undefined) {
            At::AtDropColumn => s.destructive(&format!(
                "DROP COLUMN {} deletes the column's data in every tenant",
                cmd.name
            )),
            At::AtAlterColumnType => s.destructive(&format!(
                "changing the type of column {} rewrites its data and can lose precision or \
                 fail on existing values",
                cmd.name
            )),
            At::AtDisableRowSecurity | At::AtNoForceRowSecurity => row_security(s),
            At::AtChangeOwner => s.error(
                rule::PRIVILEGES,
                "ALTER … OWNER TO gives the tenant's object away from the control plane, which \
                 must own it to migrate it; grant privileges instead",
            ),
            At::AtSetTableSpace => server_objects(s),
            At::AtGenericOptions => server_objects(s),
            At::AtDetachPartitionFinalize => s.error(
                rule::NON_TRANSACTIONAL,
                "DETACH PARTITION … FINALIZE cannot run inside the tenant's transaction; use \
                 DETACH PARTITION without CONCURRENTLY",
            ),
            At::AtDetachPartition => {
                if let Some(N::PartitionCmd(p)) = cmd.def.as_ref().and_then(|d| d.node.as_ref())
                    && p.concurrent
                {
                    s.error(
                        rule::NON_TRANSACTIONAL,
                        "DETACH PARTITION CONCURRENTLY cannot run inside the tenant's \
                         transaction; use DETACH PARTITION",
                    );
                }
            }
            _ => {}
        }
    }
}

pub(super) fn drop(d: &pb::DropStmt, s: &mut Sink) {
    let kind = Ot::try_from(d.remove_type).unwrap_or(Ot::Undefined);
    let cascade = d.behavior == pb::DropBehavior::DropCascade as i32;
    // (parts naming the object itself, position of the relation's name from the end)
    let shape = match kind {
        Ot::ObjectTable => {
            s.destructive("DROP TABLE deletes the table and its rows in every tenant");
            Some((1, Some(0)))
        }
        Ot::ObjectIndex => {
            if d.concurrent {
                s.error(
                    rule::NON_TRANSACTIONAL,
                    "DROP INDEX CONCURRENTLY cannot run inside the tenant's transaction; use \
                     DROP INDEX",
                );
            }
            Some((1, Some(0)))
        }
        Ot::ObjectView | Ot::ObjectMatview | Ot::ObjectSequence => Some((1, Some(0))),
        Ot::ObjectType
        | Ot::ObjectDomain
        | Ot::ObjectFunction
        | Ot::ObjectProcedure
        | Ot::ObjectRoutine => {
            if cascade {
                s.destructive(
                    "DROP … CASCADE of a type, domain or function also drops the columns, \
                     defaults and constraints that use it",
                );
            }
            Some((1, None))
        }
        Ot::ObjectTrigger | Ot::ObjectRule => Some((2, Some(1))),
        Ot::ObjectPolicy => {
            row_security(s);
            None
        }
        Ot::ObjectExtension => {
            s.allowed_or(
                s.allow.extensions,
                rule::EXTENSION,
                "DROP EXTENSION: allowed by allow_extensions",
                "DROP EXTENSION removes an extension the whole database shares; ask an \
                 operator, or push with allow_extensions (admin only)",
            );
            if cascade {
                s.destructive("DROP EXTENSION … CASCADE also drops the columns that use it");
            }
            None
        }
        Ot::ObjectSchema => {
            schema_statement("DROP SCHEMA", s);
            None
        }
        Ot::ObjectEventTrigger
        | Ot::ObjectPublication
        | Ot::ObjectFdw
        | Ot::ObjectForeignServer
        | Ot::ObjectForeignTable
        | Ot::ObjectLanguage
        | Ot::ObjectCast
        | Ot::ObjectTransform
        | Ot::ObjectAccessMethod
        | Ot::ObjectCollation => {
            server_objects(s);
            None
        }
        _ => {
            unsupported(
                "only tables, indexes, views, sequences, types, domains, functions, \
                 procedures, triggers and rules may be dropped",
                s,
            );
            None
        }
    };
    if let Some((parts, relation)) = shape {
        for object in &d.objects {
            object_name(object, parts, relation, s);
        }
    }
}

pub(super) fn comment(c: &pb::CommentStmt, s: &mut Sink) {
    let shape = match Ot::try_from(c.objtype).unwrap_or(Ot::Undefined) {
        Ot::ObjectTable
        | Ot::ObjectIndex
        | Ot::ObjectView
        | Ot::ObjectMatview
        | Ot::ObjectSequence
        | Ot::ObjectType
        | Ot::ObjectDomain
        | Ot::ObjectFunction
        | Ot::ObjectProcedure
        | Ot::ObjectRoutine => (1, Some(0)),
        Ot::ObjectColumn | Ot::ObjectTrigger | Ot::ObjectTabconstraint | Ot::ObjectRule => {
            (2, Some(1))
        }
        Ot::ObjectDomconstraint => (2, None),
        Ot::ObjectSchema => return schema_statement("COMMENT ON SCHEMA", s),
        _ => {
            return unsupported(
                "COMMENT is for the tenant's own tables, columns, indexes, views, sequences, \
                 types, functions, triggers, constraints and rules, not for objects the whole \
                 server shares",
                s,
            );
        }
    };
    if let Some(object) = c.object.as_deref() {
        object_name(object, shape.0, shape.1, s);
    }
}

pub(super) fn rename(r: &pb::RenameStmt, s: &mut Sink) {
    match Ot::try_from(r.rename_type).unwrap_or(Ot::Undefined) {
        Ot::ObjectTable
        | Ot::ObjectView
        | Ot::ObjectMatview
        | Ot::ObjectSequence
        | Ot::ObjectIndex
        | Ot::ObjectType
        | Ot::ObjectDomain => {
            if reserved(&r.newname) {
                reserved_error(&r.newname, s);
            }
        }
        Ot::ObjectColumn
        | Ot::ObjectAttribute
        | Ot::ObjectTabconstraint
        | Ot::ObjectDomconstraint
        | Ot::ObjectTrigger
        | Ot::ObjectRule
        | Ot::ObjectFunction
        | Ot::ObjectProcedure
        | Ot::ObjectRoutine => {}
        Ot::ObjectPolicy => return row_security(s),
        Ot::ObjectSchema => return schema_statement("ALTER SCHEMA … RENAME", s),
        Ot::ObjectRole => {
            return s.error(
                rule::PRIVILEGES,
                "renaming a role changes the whole server; remove the statement",
            );
        }
        Ot::ObjectDatabase
        | Ot::ObjectTablespace
        | Ot::ObjectEventTrigger
        | Ot::ObjectPublication
        | Ot::ObjectSubscription
        | Ot::ObjectFdw
        | Ot::ObjectForeignServer
        | Ot::ObjectForeignTable
        | Ot::ObjectLanguage
        | Ot::ObjectCollation => return server_objects(s),
        _ => {
            return unsupported(
                "only tables, columns, indexes, views, sequences, types, constraints, \
                 triggers, rules and functions may be renamed",
                s,
            );
        }
    }
    if let Some(object) = r.object.as_deref() {
        let parts = if r.rename_type == Ot::ObjectTrigger as i32
            || r.rename_type == Ot::ObjectRule as i32
        {
            2
        } else {
            1
        };
        object_name(object, parts, None, s);
    }
}

pub(super) fn grant(g: &pb::GrantStmt, s: &mut Sink) {
    let verb = if g.is_grant { "GRANT" } else { "REVOKE" };
    if g.targtype == pb::GrantTargetType::AclTargetAllInSchema as i32 {
        s.error(
            rule::SCHEMA_QUALIFIED,
            format!(
                "{verb} … ON ALL … IN SCHEMA names a schema, which may be another tenant's; \
                 name the tenant's objects"
            ),
        );
    }
    match Ot::try_from(g.objtype).unwrap_or(Ot::Undefined) {
        Ot::ObjectTable
        | Ot::ObjectSequence
        | Ot::ObjectFunction
        | Ot::ObjectProcedure
        | Ot::ObjectRoutine
        | Ot::ObjectType
        | Ot::ObjectDomain => {
            for object in &g.objects {
                object_name(object, 1, Some(0), s);
            }
        }
        _ => s.error(
            rule::PRIVILEGES,
            format!(
                "{verb} on schemas, databases, tablespaces, languages, foreign servers, large \
                 objects or settings reaches beyond the tenant's objects; grant on the tenant's \
                 tables, sequences, functions and types"
            ),
        ),
    }
    if g.grant_option {
        s.error(
            rule::PRIVILEGES,
            "WITH GRANT OPTION lets the grantee pass the privilege on to any role, PUBLIC \
             included; grant without it",
        );
    }
    for grantee in &g.grantees {
        let Some(N::RoleSpec(role)) = grantee.node.as_ref() else {
            continue;
        };
        if role.roletype == pb::RoleSpecType::RolespecPublic as i32 {
            s.error(
                rule::PRIVILEGES,
                format!(
                    "{verb} … PUBLIC changes what every role can do, other tenants' roles \
                     included; name the roles"
                ),
            );
        } else if role.roletype == pb::RoleSpecType::RolespecCstring as i32 {
            s.grantee(&role.rolename);
        } else if !g.is_grant {
            s.error(
                rule::PRIVILEGES,
                "REVOKE … FROM CURRENT_USER (or SESSION_USER, CURRENT_ROLE) takes privileges                  from the control plane's own role, which needs them to migrate and purge the                  tenant; name the roles",
            );
        }
    }
}
