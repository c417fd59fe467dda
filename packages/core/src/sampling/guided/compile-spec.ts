import type { CompiledGrammar, GrammarCompiler } from '@mlc-ai/web-xgrammar';
import type { GuidedSpec } from '../../sampling-params.js';
import type { XGrammar } from './load-xgrammar.js';

/**
 * Compiles a guided-decoding spec with XGrammar. Self-contained on purpose: the compile worker
 * runs this function's source text (`compileSpec.toString()`), so it must not reference imports.
 * JSON is compact on one line with `", "` / `": "` separators: a grammar that allows free
 * whitespace lets a weak model emit spaces until `max_tokens`.
 */
export async function compileSpec(
  xg: XGrammar,
  compiler: GrammarCompiler,
  spec: GuidedSpec,
): Promise<CompiledGrammar> {
  const separators: [string, string] = [', ', ': '];
  const ebnfString = (s: string): string => {
    let out = '"';
    for (const ch of s) {
      const cp = ch.codePointAt(0) as number;
      if (ch === '"' || ch === '\\') out += `\\${ch}`;
      else if (cp >= 0x20 && cp < 0x7f) out += ch;
      else if (cp <= 0xffff) out += `\\u${cp.toString(16).padStart(4, '0')}`;
      else out += `\\U${cp.toString(16).padStart(8, '0')}`;
    }
    return `${out}"`;
  };
  /** Renames rule `from` to `to` in an EBNF text, outside string literals and character classes. */
  const renameRule = (ebnf: string, from: string, to: string): string => {
    let out = '';
    let i = 0;
    while (i < ebnf.length) {
      const ch = ebnf[i];
      if (ch === '"' || ch === '[') {
        const close = ch === '"' ? '"' : ']';
        let j = i + 1;
        while (j < ebnf.length && ebnf[j] !== close) j += ebnf[j] === '\\' ? 2 : 1;
        out += ebnf.slice(i, j + 1);
        i = j + 1;
      } else if (/[A-Za-z_]/.test(ch)) {
        let j = i;
        while (j < ebnf.length && /[A-Za-z0-9_.-]/.test(ebnf[j])) j++;
        const word = ebnf.slice(i, j);
        out += word === from ? to : word;
        i = j;
      } else {
        out += ch;
        i++;
      }
    }
    return out;
  };
  /**
   * Compact one-line JSON of a schema as EBNF. XGrammar's rule for length-bounded strings
   * (`[^"\\\r\n]{0,n}`) lets control characters through, which JSON forbids: patched here.
   */
  const jsonEbnf = async (schema: string, strict: boolean): Promise<string> => {
    const ebnf = await xg.Testings._jsonSchemaToEBNF(schema, false, -1, separators, strict);
    return ebnf.split('[^"\\\\\\r\\n]').join('[^\\0-\\x1f"\\\\]');
  };
  switch (spec.type) {
    case 'json_schema': {
      const schema = typeof spec.schema === 'string' ? spec.schema : JSON.stringify(spec.schema);
      const json = await jsonEbnf(schema, spec.strict !== false);
      if (!spec.prefix && !spec.suffix) return compiler.compileGrammar(json);
      const parts = [
        spec.prefix ? ebnfString(spec.prefix) : '',
        'json_value_root',
        spec.suffix ? ebnfString(spec.suffix) : '',
      ];
      const wrapped = `root ::= ${parts.filter(Boolean).join(' ')}`;
      return compiler.compileGrammar(`${wrapped}\n${renameRule(json, 'root', 'json_value_root')}`);
    }
    case 'json_object':
      return compiler.compileGrammar(await jsonEbnf('{"type": "object"}', false));
    case 'json':
      return compiler.compileGrammar(await jsonEbnf('{}', false));
    case 'regex':
      return compiler.compileStructuralTag({
        type: 'structural_tag',
        format: { type: 'regex', pattern: spec.pattern },
      });
    case 'grammar':
      return compiler.compileGrammar(spec.grammar);
    case 'choice':
      return compiler.compileGrammar(`root ::= ${spec.choices.map(ebnfString).join(' | ')}`);
    case 'structural_tag':
      return compiler.compileStructuralTag(spec.tag);
    default:
      throw new Error(`unknown guided decoding type ${(spec as { type: string }).type}`);
  }
}
