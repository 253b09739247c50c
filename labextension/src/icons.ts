import { LabIcon } from '@jupyterlab/ui-components';

import { PREFIX } from './tokens';

const brush = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16">
  <path class="jp-icon3" fill="#616161" d="M20.7 4.1a1.3 1.3 0 0 0-1.8 0L10 13l2 2 8.7-9.1a1.3 1.3 0 0 0 0-1.8zM8.6 14.2c-1.9 0-3.4 1.5-3.4 3.4 0 1.1-.9 2-2.2 2 .9 1.3 2.5 2 4 2 2.5 0 4.4-2 4.4-4.4 0-1.7-1.2-3-2.8-3z"/>
</svg>`;

/** A paint brush: the `%%paint` cell command. */
export const paintIcon = new LabIcon({ name: `${PREFIX}:paint`, svgstr: brush });
