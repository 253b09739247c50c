import * as fs from 'fs';
import * as path from 'path';

import { CommandIDs, PluginIDs } from '../src/tokens';

const SCHEMA_DIR = path.join(__dirname, '..', 'schema');
const schemas = fs
  .readdirSync(SCHEMA_DIR)
  .filter(f => f.endsWith('.json'))
  .map(f => ({
    stem: f.replace(/\.json$/, ''),
    schema: JSON.parse(fs.readFileSync(path.join(SCHEMA_DIR, f), 'utf-8'))
  }));

describe('settings schemas', () => {
  it('has one schema per plugin, named after the end of its id', () => {
    const stems = schemas.map(s => s.stem).sort();
    const ids = Object.values(PluginIDs)
      .map(id => id.split(':').pop())
      .sort();
    expect(stems).toEqual(ids);
    expect(Object.values(PluginIDs).every(id => id.startsWith('jupyter-sd:'))).toBe(true);
  });

  it.each(schemas.map(s => [s.stem, s.schema]))(
    '%s: every property has a title, description and default',
    (_, schema) => {
      const s = schema as any;
      expect(s.title).toBeTruthy();
      expect(s.additionalProperties).toBe(false);
      for (const [name, prop] of Object.entries<any>(s.properties)) {
        expect([name, typeof prop.title, typeof prop.description]).toEqual([
          name,
          'string',
          'string'
        ]);
        expect(prop).toHaveProperty('default');
      }
    }
  );

  it('points toolbars and menus at our commands', () => {
    const ids = new Set<string>(Object.values(CommandIDs));
    const used: string[] = [];
    for (const { schema } of schemas) {
      for (const items of Object.values<any[]>(schema['jupyter.lab.toolbars'] ?? {})) {
        used.push(...items.map(i => i.command));
      }
      for (const menu of schema['jupyter.lab.menus']?.main ?? []) {
        used.push(...menu.items.map((i: any) => i.command));
      }
      used.push(...(schema['jupyter.lab.menus']?.context ?? []).map((i: any) => i.command));
    }
    expect(used.length).toBeGreaterThan(0);
    expect(used.filter(c => !ids.has(c))).toEqual([]);
  });

  it('gives a new cell a template that starts with the magic', () => {
    const commands = schemas.find(s => s.stem === 'commands')!.schema;
    expect(commands.properties.cellTemplate.default.startsWith('%%paint')).toBe(true);
  });
});
