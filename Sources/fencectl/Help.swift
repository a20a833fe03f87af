/// The help texts, made from the usages (install.sh sets them in the man page).
enum Help {
    static let width = 80
    static let column = 26

    /// `fencectl CMD --help`.
    static func text(_ usage: Usage) -> String {
        var text = wrap("OVERVIEW: \(usage.abstract)") + "\n\n"
        if let discussion = usage.discussion {
            text += discussion.split(separator: "\n", omittingEmptySubsequences: false).map { wrap(String($0)) }.joined(separator: "\n") + "\n\n"
        }
        text += "USAGE: " + wrap(synopsis(usage), start: 7, indent: 7) + "\n\n"
        if !usage.arguments.isEmpty {
            text += "ARGUMENTS:\n" + usage.arguments.map { entry("<\($0.name)>", $0.help) }.joined() + "\n"
        }
        text += "OPTIONS:\n" + usage.allOptions.map { option in
            var help = option.help
            if case .words(let choices) = option.completion { help += " (values: \(choices.joined(separator: ", ")))" }
            if let value = option.defaultValue { help += " (default: \(value))" }
            return entry(option.spelling, help)
        }.joined()
        return text
    }

    /// `fencectl --help`.
    static func overview(_ usages: [Usage]) -> String {
        "OVERVIEW: The operator's tool for fence-router.\n\nUSAGE: fencectl <subcommand>\n\nSUBCOMMANDS:\n"
            + usages.map { entry($0.path.joined(separator: " "), $0.abstract) }.joined()
            + "\nOPTIONS:\n" + [Usage.Option.help, .version].map { entry($0.spelling, $0.help) }.joined()
            + "\nSee 'fencectl <subcommand> --help' for detailed help.\n"
    }

    /// `fencectl host`: a group's commands.
    static func group(_ name: String, _ members: [Usage]) -> String {
        "USAGE: fencectl \(name) <subcommand>\n\nSUBCOMMANDS:\n"
            + members.map { entry($0.path.dropFirst().joined(separator: " "), $0.abstract) }.joined()
            + "\nSee 'fencectl \(name) <subcommand> --help' for detailed help.\n"
    }

    /// The one-line form: arguments, then options, optional ones in brackets.
    static func synopsis(_ usage: Usage) -> String {
        let arguments = usage.arguments.map { $0.isOptional ? "[<\($0.name)>]" : "<\($0.name)>" }
        let options = usage.options.map { option in
            let name = option.long.map { "--\($0)" } ?? option.short.map { "-\($0)" } ?? ""
            let word = option.valueName.map { "\(name) <\($0)>" } ?? name
            return option.isRequired ? word : "[\(word)]"
        }
        return ([usage.name] + arguments + options).joined(separator: " ")
    }

    /// A name and its description in two columns; the description wraps within its column.
    private static func entry(_ name: String, _ description: String) -> String {
        let lead = "  " + name
        let body = wrap(description, start: column, indent: column)
        if lead.count < column - 1 { return lead + String(repeating: " ", count: column - lead.count) + body + "\n" }
        return lead + "\n" + String(repeating: " ", count: column) + body + "\n"
    }

    /// Words filled into lines of `width`: the first continues a line already `start` columns
    /// long, the others are indented by `indent` spaces.
    static func wrap(_ text: String, start: Int = 0, indent: Int = 0) -> String {
        var lines: [String] = []
        var line = ""
        var used = start
        for word in text.split(separator: " ") {
            if !line.isEmpty, used + line.count + 1 + word.count > width {
                lines.append(line)
                line = ""
                used = indent
            }
            line += (line.isEmpty ? "" : " ") + word
        }
        lines.append(line)
        return lines.joined(separator: "\n" + String(repeating: " ", count: indent))
    }
}
