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

    /// The commands under one first word: a group (`config`, `host`) or a single command.
    private struct Group {
        let first: String
        let members: [Usage]
        /// The command, when the first word is one by itself.
        var command: Usage? { members.count == 1 && members[0].path.count == 1 ? members[0] : nil }
    }

    private static func groups(_ usages: [Usage]) -> [Group] {
        usages.reduce(into: [Group]()) { groups, usage in
            if let index = groups.firstIndex(where: { $0.first == usage.path[0] }) {
                groups[index] = Group(first: usage.path[0], members: groups[index].members + [usage])
            } else {
                groups.append(Group(first: usage.path[0], members: [usage]))
            }
        }
    }

    /// The arms of both scripts' `case` on the first word: a command's settings, or a group's
    /// `opening` (which picks the subcommand) and one arm per member.
    private static func arms(_ usages: [Usage], settings: (Usage, _ indent: Int) -> String, opening: (Group) -> String) -> String {
        groups(usages).map { group in
            var arm = "        \(group.first))\n"
            if let command = group.command {
                arm += settings(command, 12)
            } else {
                arm += opening(group)
                for member in group.members {
                    arm += "                \(member.path[1]))\n" + settings(member, 20) + "                    ;;\n"
                }
                arm += "            esac\n"
            }
            return arm + "            ;;\n"
        }.joined()
    }

    // MARK: bash

    static func bash(_ usages: [Usage]) -> String {
        var script = """
            # bash completion for fencectl (made by fencectl --generate-completion-script bash)
            _fencectl() {
                local current=${COMP_WORDS[COMP_CWORD]} previous=${COMP_WORDS[COMP_CWORD-1]}
                local words="" files="" directories="" valued="" arguments=nothing
                if ((COMP_CWORD == 1)); then
                    mapfile -t COMPREPLY < <(compgen -W "\(groups(usages).map(\.first).joined(separator: " ")) help --help --version" -- "$current")
                    return
                fi
                case "${COMP_WORDS[1]}" in

            """
        script += arms(usages, settings: bashSettings) { group in
            "            if ((COMP_CWORD == 2)); then mapfile -t COMPREPLY < <(compgen -W \"\(group.members.map { $0.path[1] }.joined(separator: " "))\" -- \"$current\"); return; fi\n"
                + "            case \"${COMP_WORDS[2]}\" in\n"
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
                    commands=(\(groups(usages).map { quoted("\($0.first):\(description(of: $0))") }.joined(separator: " ")))
                    _describe -t commands 'fencectl command' commands
                    return
                fi
                case $words[2] in

            """
        script += arms(usages, settings: zshSettings) { group in
            let names = group.members.map { quoted("\($0.path[1]):\(summary($0))") }.joined(separator: " ")
            return "            if (( CURRENT == 3 )); then commands=(\(names)); _describe -t commands 'subcommand' commands; return; fi\n"
                + "            shift 2 words; (( CURRENT -= 2 ))\n"
                + "            case $words[1] in\n"
        }
        script += """
                esac
            }
            _fencectl "$@"

            """
        return script
    }

    /// A command's `_arguments`; a command by itself first drops its name from the words.
    private static func zshSettings(_ usage: Usage, indent: Int) -> String {
        let margin = String(repeating: " ", count: indent)
        return (usage.path.count == 1 ? margin + "shift words; (( CURRENT-- ))\n" : "") + zshArguments(usage, indent: indent)
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
    private static func description(of group: Group) -> String {
        if let command = group.command { return summary(command) }
        return group.members.map { $0.path[1] }.joined(separator: ", ")
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
