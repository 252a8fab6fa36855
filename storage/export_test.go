package storage

// ObjectName exposes objectName to the tests, which compare it with its
// SQL twin, privata_catalog.object_name.
var ObjectName = objectName
