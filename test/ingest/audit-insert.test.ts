import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AUDIT_INSERT_COLUMNS, auditInsertValues } from '../../ingest/audit-insert.ts';
import { toAuditRow, type AuditRow } from '../../model/audit-event.ts';
import { auditEvent } from '../helpers/kafka.ts';

describe('audit inserts as JSONCompactEachRow', () => {
  it('name every field of a row, each value under its own column', () => {
    const row: AuditRow = { ...toAuditRow(auditEvent(7)), counted: 0, report_id: '01a20f64-c9e1-74d3-92cf-2e71ca718516', replaces_at: '2026-11-24 10:00:00.000000000' };
    assert.deepEqual([...AUDIT_INSERT_COLUMNS].sort(), Object.keys(row).sort());
    const values = auditInsertValues(row);
    assert.equal(values.length, AUDIT_INSERT_COLUMNS.length);
    AUDIT_INSERT_COLUMNS.forEach((column, i) => assert.deepEqual(values[i], row[column as keyof AuditRow], column));
  });

  it('send the table defaults of counted, report_id and replaces_at explicitly', () => {
    const row = toAuditRow(auditEvent(8));
    const values = auditInsertValues(row);
    assert.equal(values[AUDIT_INSERT_COLUMNS.indexOf('counted')], 1);
    assert.equal(values[AUDIT_INSERT_COLUMNS.indexOf('report_id')], row.event_id);
    assert.equal(values[AUDIT_INSERT_COLUMNS.indexOf('replaces_at')], row.timestamp);
  });
});
