"""What workflows, activities and the client share: workflow ids, AWS names, search
attributes, and the messages owners and children exchange.

Imports only capt.rules (import-linter checks it). Kept empty: workflow sandboxes import this
package.
"""
