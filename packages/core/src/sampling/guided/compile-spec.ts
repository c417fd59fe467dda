import type { CompiledGrammar, GrammarCompiler } from '@mlc-ai/web-xgrammar';
import type { GuidedSpec } from '../../sampling-params.js';

/**
 * Compiles a guided-decoding spec with XGrammar. Self-contained on purpose: the compile worker
 * runs this function's source text (`compileSpec.toString()`), so it must not reference imports.
 * JSON is compact on one line with `", "` / `": "` separators: a grammar that allows free
 * whitespace lets a weak model emit spaces until `max_tokens`.
 */
export async function compileSpec(compiler: GrammarCompiler, spec: GuidedSpec): Promise<CompiledGrammar> {
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
  switch (spec.type) {
    case 'json_schema': {
      const schema = typeof spec.schema === 'string' ? spec.schema : JSON.stringify(spec.schema);
      return compiler.compileJSONSchema(schema, false, -1, separators, spec.strict !== false);
    }
    case 'json_object':
      return compiler.compileJSONSchema('{"type": "object"}', false, -1, separators, false);
    case 'json':
      return compiler.compileJSONSchema('{}', false, -1, separators, false);
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
