/// bash and zsh completions, written from the usages (`fencectl --generate-completion-script
/// SHELL`, run by install.sh): the subcommands, their options, and what each value may be.
enum Completions {
    enum Shell: String {
        case bash
        case zsh
    }

    static func script(for shell: Shell, _ usages: [Usage]) -> String {
        switch shell {
        case .bash: bash(usages)
        case .zsh: zsh(usages)
        }
    }

    /// The first words of the commands: a group (`config`, `host`) or a command.
    private static func firsts(_ usages: [Usage]) -> [String] {
        usages.reduce(into: [String]()) { names, usage in
            if !names.contains(usage.path[0]) { names.append(usage.path[0]) }
        }
    }

    // MARK: bash

    static func bash(_ usages: [Usage]) -> String {
        var script = """
            # bash completion for fencectl (made by fencectl --generate-completion-script bash)
            _fencectl() {
                local current=${COMP_WORDS[COMP_CWORD]} previous=${COMP_WORDS[COMP_CWORD-1]}
                local words="" files="" directories="" valued="" arguments=nothing
                if ((COMP_CWORD == 1)); then
                    mapfile -t COMPREPLY < <(compgen -W "\(firsts(usages).joined(separator: " ")) help --help --version" -- "$current")
                    return
                fi
                case "${COMP_WORDS[1]}" in

            """
        for first in firsts(usages) {
            let members = usages.filter { $0.path[0] == first }
            script += "        \(first))\n"
            if members.count == 1, members[0].path.count == 1 {
                script += bashSettings(members[0], indent: 12)
            } else {
                let names = members.map { $0.path[1] }.joined(separator: " ")
                script += "            if ((COMP_CWORD == 2)); then mapfile -t COMPREPLY < <(compgen -W \"\(names)\" -- \"$current\"); return; fi\n"
                script += "            case \"${COMP_WORDS[2]}\" in\n"
                for member in members {
                    script += "                \(member.path[1]))\n" + bashSettings(member, indent: 20) + "                    ;;\n"
                }
                script += "            esac\n"
            }
            script += "            ;;\n"
        }
        script += """
                esac
                if [[ " $files " == *" $previous "* ]]; then compopt -o filenames; mapfile -t COMPREPLY < <(compgen -f -- "$current"); return; fi
                if [[ " $directories " == *" $previous "* ]]; then compopt -o filenames; mapfile -t COMPREPLY < <(compgen -d -- "$current"); return; fi
                case "$previous" in

            """
        var choices: [String: [String]] = [:]
        for usage in usages {
            for option in usage.options {
                if case .words(let words) = option.completion, let long = option.long { choices["--\(long)"] = words }
            }
        }
        for (option, words) in choices.sorted(by: { $0.key < $1.key }) {
            script += "        \(option)) mapfile -t COMPREPLY < <(compgen -W \"\(words.joined(separator: " "))\" -- \"$current\"); return ;;\n"
        }
        script += """
                esac
                if [[ " $valued " == *" $previous "* ]]; then COMPREPLY=(); return; fi
                if [[ $current == -* || $arguments == nothing ]]; then
                    mapfile -t COMPREPLY < <(compgen -W "$words" -- "$current")
                elif [[ $arguments == files ]]; then
                    compopt -o filenames
                    mapfile -t COMPREPLY < <(compgen -f -- "$current")
                fi
            }
            complete -F _fencectl fencectl

            """
        return script
    }

    private static func bashSettings(_ usage: Usage, indent: Int) -> String {
        let margin = String(repeating: " ", count: indent)
        let options = usage.allOptions
        func names(_ wanted: (Usage.Option) -> Bool) -> String {
            options.filter(wanted).flatMap(\.spellings).joined(separator: " ")
        }
        let arguments = usage.arguments.contains { $0.completion == .files } ? "files" : usage.arguments.isEmpty ? "nothing" : "other"
        return margin + "words=\"\(names { _ in true })\"\n"
            + margin + "files=\"\(names { $0.completion == .files })\"\n"
            + margin + "directories=\"\(names { $0.completion == .directories })\"\n"
            + margin + "valued=\"\(names { $0.valueName != nil })\"\n"
            + margin + "arguments=\(arguments)\n"
    }

    // MARK: zsh

    static func zsh(_ usages: [Usage]) -> String {
        var script = """
            #compdef fencectl
            # zsh completion for fencectl (made by fencectl --generate-completion-script zsh)
            _fencectl() {
                local -a commands
                if (( CURRENT == 2 )); then
                    commands=(\(firsts(usages).map { quoted("\($0):\(description(of: $0, usages))") }.joined(separator: " ")))
                    _describe -t commands 'fencectl command' commands
                    return
                fi
                case $words[2] in

            """
        for first in firsts(usages) {
            let members = usages.filter { $0.path[0] == first }
            script += "        \(first))\n"
            if members.count == 1, members[0].path.count == 1 {
                script += "            shift words; (( CURRENT-- ))\n" + zshArguments(members[0], indent: 12)
            } else {
                let names = members.map { quoted("\($0.path[1]):\(summary($0))") }.joined(separator: " ")
                script += "            if (( CURRENT == 3 )); then commands=(\(names)); _describe -t commands 'subcommand' commands; return; fi\n"
                script += "            shift 2 words; (( CURRENT -= 2 ))\n"
                script += "            case $words[1] in\n"
                for member in members {
                    script += "                \(member.path[1]))\n" + zshArguments(member, indent: 20) + "                    ;;\n"
                }
                script += "            esac\n"
            }
            script += "            ;;\n"
        }
        script += """
                esac
            }
            _fencectl "$@"

            """
        return script
    }

    private static func zshArguments(_ usage: Usage, indent: Int) -> String {
        let margin = String(repeating: " ", count: indent)
        var specs: [String] = []
        for option in usage.allOptions {
            // A value may follow a letter at once (-fFILE): `-f+`.
            let names = option.spellings.map { $0.count == 2 && option.valueName != nil ? $0 + "+" : $0 }
            let action = option.valueName.map { ":\($0):\(zshAction(option.completion))" } ?? ""
            let help = "[\(sanitized(option.help))]"
            // Two spellings: one spec for each (zsh's brace expansion, outside the quotes), each excluding both.
            specs += names.count == 1
                ? [quoted(names[0] + help + action)]
                : [quoted("(\(option.spellings.joined(separator: " ")))") + "{\(names.joined(separator: ","))}" + quoted(help + action)]
        }
        for argument in usage.arguments {
            specs.append(quoted((argument.isOptional ? "::" : ":") + "\(argument.name):\(zshAction(argument.completion))"))
        }
        return margin + "_arguments -s " + specs.joined(separator: " \\\n" + margin + "    ") + "\n"
    }

    private static func zshAction(_ completion: Usage.Completion) -> String {
        switch completion {
        case .nothing: " "
        case .files: "_files"
        case .directories: "_files -/"
        case .words(let words): "(\(words.joined(separator: " ")))"
        }
    }

    /// A command's summary; a group's, the names of its subcommands.
    private static func description(of first: String, _ usages: [Usage]) -> String {
        let members = usages.filter { $0.path[0] == first }
        if members.count == 1, members[0].path.count == 1 { return summary(members[0]) }
        return members.map { $0.path[1] }.joined(separator: ", ")
    }

    /// The first sentence, without the characters zsh's specs give a meaning.
    private static func summary(_ usage: Usage) -> String { sanitized(usage.abstract) }

    private static func sanitized(_ text: String) -> String {
        let sentence = text.prefix { $0 != "." && $0 != "(" }
        return String(sentence.filter { !"[]:'\\".contains($0) }).trimmingSpaces
    }

    /// A word for the shell in single quotes (the texts hold none).
    private static func quoted(_ word: String) -> String { "'\(word)'" }
}

private extension String {
    var trimmingSpaces: String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
